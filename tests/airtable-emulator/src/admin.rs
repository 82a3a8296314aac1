//! The admin surface: act as a person editing Airtable in its UI (changes arrive in webhook
//! payloads as `source: "client"`), read the whole state and the counters, inject faults,
//! move the clock. Used in-process by Rust tests and over HTTP under `/_admin`.

use crate::{
    config::{Faults, RateLimits},
    faults::Scripted,
    lock,
    model::{Changes, RecordInput},
    ApiError, Shared, Stats,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;

#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

fn fields_of(v: Value) -> Result<Map<String, Value>, ApiError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid_request("fields must be an object")),
    }
}

fn merge(into: &mut Changes, from: Changes) {
    for (table, tc) in from.tables {
        let t = into.tables.entry(table).or_default();
        t.created.extend(tc.created);
        for (rid, prev) in tc.changed {
            let entry = t.changed.entry(rid).or_default();
            for (f, v) in prev {
                entry.entry(f).or_insert(v);
            }
        }
        t.destroyed.extend(tc.destroyed);
    }
}

impl Admin {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Creates records as a UI edit (one transaction, any number of records); returns them
    /// rendered with field names.
    pub fn create_records(
        &self,
        base: &str,
        table: &str,
        records: Vec<Value>,
    ) -> Result<Vec<Value>, ApiError> {
        let inputs = records
            .into_iter()
            .map(|f| Ok(RecordInput { id: None, fields: fields_of(f)? }))
            .collect::<Result<Vec<_>, ApiError>>()?;
        self.shared.write(base, table, "client", |b, ti, now| {
            let mut changes = Changes::default();
            let mut ids = Vec::new();
            for chunk in inputs.chunks(10) {
                let (created, c) = b.create(ti, chunk, true, now)?;
                ids.extend(created);
                merge(&mut changes, c);
            }
            Ok((b.render_all(ti, &ids, false), changes))
        })
    }

    /// Updates (merges) one record's fields as a UI edit.
    pub fn update_record(
        &self,
        base: &str,
        table: &str,
        id: &str,
        fields: Value,
    ) -> Result<Value, ApiError> {
        let input = RecordInput { id: Some(id.to_owned()), fields: fields_of(fields)? };
        self.shared.write(base, table, "client", |b, ti, now| {
            let (ids, changes) = b.update(ti, std::slice::from_ref(&input), false, true, now)?;
            Ok((b.render_all(ti, &ids, false).pop().unwrap_or(Value::Null), changes))
        })
    }

    /// Deletes one record as a UI edit.
    pub fn delete_record(&self, base: &str, table: &str, id: &str) -> Result<(), ApiError> {
        self.shared.write(base, table, "client", |b, ti, now| {
            Ok(((), b.delete(ti, &[id.to_owned()], now)?))
        })
    }

    /// Every record of a table, rendered with field names, in storage order.
    pub fn records(&self, base: &str, table: &str) -> Result<Vec<Value>, ApiError> {
        self.shared.read(base, table, |b, ti| {
            let t = &b.tables[ti];
            Ok(t.records.values().map(|r| t.render(r, false, None)).collect())
        })
    }

    /// The whole state: bases, tables with their fields and records, webhooks.
    pub fn state(&self) -> Value {
        let world = lock(&self.shared.world);
        let now = self.shared.clock.now();
        let bases: Vec<Value> = world
            .bases
            .values()
            .map(|b| {
                let tables: Vec<Value> = b
                    .tables
                    .iter()
                    .map(|t| {
                        let mut meta = t.meta();
                        meta["records"] = Value::Array(
                            t.records.values().map(|r| t.render(r, false, None)).collect(),
                        );
                        meta
                    })
                    .collect();
                json!({
                    "id": b.id, "name": b.name, "tables": tables,
                    "webhooks": b.webhooks.iter().map(|h| {
                        let mut d = h.describe(now);
                        d["payloadCount"] = json!(h.payloads.len());
                        d
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "bases": bases })
    }

    /// (id, name) of every base.
    pub fn bases(&self) -> Vec<(String, String)> {
        lock(&self.shared.world).bases.values().map(|b| (b.id.clone(), b.name.clone())).collect()
    }

    /// The id of a table (by name or id) in a base.
    pub fn table_id(&self, base: &str, table: &str) -> Option<String> {
        self.shared.read(base, table, |b, ti| Ok(b.tables[ti].id.clone())).ok()
    }

    /// The id of a field (by name) of a table.
    pub fn field_id(&self, base: &str, table: &str, field: &str) -> Option<String> {
        self.shared
            .read(base, table, |b, ti| Ok(b.tables[ti].field(field).map(|f| f.id.clone())))
            .ok()
            .flatten()
    }

    /// Deletes a field "in the UI": hooks that watch it get an error payload and stop.
    pub fn delete_field(&self, base: &str, table: &str, field: &str) -> Result<(), ApiError> {
        let now = self.shared.clock.now();
        let pings = {
            let mut world = lock(&self.shared.world);
            let inferred = world.inferred;
            let b = world.base_mut(base)?;
            let ti = b.table_index(table, inferred)?;
            let fid = b.tables[ti]
                .field(field)
                .map(|f| f.id.clone())
                .ok_or_else(|| ApiError::unknown_field(field))?;
            b.tables[ti].fields.retain(|f| f.id != fid);
            for r in b.tables[ti].records.values_mut() {
                r.cells.remove(&fid);
            }
            let txn = b.next_transaction;
            b.next_transaction += 1;
            let mut pings = Vec::new();
            for h in &mut b.webhooks {
                let watched = h
                    .specification
                    .pointer("/options/filters/watchDataInFieldIds")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(&fid)));
                if watched && h.record_error("INVALID_FILTERS", txn, now) {
                    pings.push(h.id.clone());
                }
            }
            pings
        };
        crate::pinger::request_pings(&self.shared, &pings);
        Ok(())
    }

    /// Pings are lost on the way from now on (or not): the receiver never sees them.
    /// Revokes the token (every request answers 401 AUTHENTICATION_REQUIRED), or restores it.
    pub fn revoke_token(&self, revoked: bool) {
        self.shared.token_revoked.store(revoked, std::sync::atomic::Ordering::SeqCst);
    }

    /// Replaces the token's scopes (e.g. grants `schema.bases:write`).
    pub fn set_scopes(&self, scopes: &[&str]) {
        *lock(&self.shared.scopes) = scopes.iter().map(|s| s.to_string()).collect();
    }

    /// Renames a table "in the UI"; its id stays.
    pub fn rename_table(&self, base: &str, table: &str, name: &str) -> Result<(), ApiError> {
        let mut world = lock(&self.shared.world);
        let b = world.base_mut(base)?;
        let ti = b.table_index(table, false)?;
        b.patch_table(ti, &json!({ "name": name })).map(drop)
    }

    /// Renames a field "in the UI"; its id stays.
    pub fn rename_field(
        &self,
        base: &str,
        table: &str,
        field: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let mut world = lock(&self.shared.world);
        let b = world.base_mut(base)?;
        let ti = b.table_index(table, false)?;
        let fid = b.tables[ti]
            .field(field)
            .map(|f| f.id.clone())
            .ok_or_else(|| ApiError::unknown_field(field))?;
        b.patch_field(ti, &fid, &json!({ "name": name })).map(drop)
    }

    /// Leaves records `ids` out of every listing (`hidden`), or puts them back: a listing
    /// that lacks records which still exist.
    pub fn hide_from_listings(&self, ids: &[String], hidden: bool) {
        let mut world = lock(&self.shared.world);
        for id in ids {
            if hidden {
                world.hidden.insert(id.clone());
            } else {
                world.hidden.remove(id);
            }
        }
    }

    pub fn lose_pings(&self, lose: bool) {
        self.shared.lose_pings.store(lose, std::sync::atomic::Ordering::SeqCst);
    }

    /// Appends `body` as the next payload of webhook `hook` of `base`, as it is (to test
    /// receivers against malformed or surprising payloads), and pings it.
    pub fn push_payload(&self, base: &str, hook: &str, body: Value) -> Result<(), ApiError> {
        let now = self.shared.clock.now();
        let pings = {
            let mut world = lock(&self.shared.world);
            let b = world.base_mut(base)?;
            let mut pings = Vec::new();
            for h in b.webhooks.iter_mut().filter(|h| h.id == hook) {
                if h.push_raw(body.clone(), now) {
                    pings.push(h.id.clone());
                }
            }
            pings
        };
        crate::pinger::request_pings(&self.shared, &pings);
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// The most recent requests (up to the log's capacity), oldest first.
    pub fn request_log(&self) -> Vec<crate::stats::LoggedRequest> {
        lock(&self.shared.stats).log.iter().cloned().collect()
    }

    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    pub fn set_faults(&self, faults: Faults) {
        lock(&self.shared.faults).faults = faults;
    }

    /// Forces these faults onto the next requests, in order.
    pub fn script_faults(&self, faults: Vec<Scripted>) {
        lock(&self.shared.faults).push_script(faults);
    }

    pub fn reseed(&self, seed: u64) {
        lock(&self.shared.faults).reseed(seed);
    }

    pub fn set_limits(&self, limits: RateLimits) {
        *lock(&self.shared.limits) = limits;
    }

    pub fn limits(&self) -> RateLimits {
        lock(&self.shared.limits).clone()
    }

    /// Moves the emulator's clock (webhook expiry, payload retention, timestamps).
    pub fn advance_clock(&self, by: chrono::Duration) {
        self.shared.clock.advance(by);
    }
}
