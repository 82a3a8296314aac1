//! The Airtable destination: every committed change to a mapped table, and every outbox
//! intent, becomes the right Airtable write — exactly once in effect.
//!
//! - Idempotent: creates and updates are performUpsert on the merge field (the row's pg id);
//!   record ids from responses go to airtable_id_map; deletes of records already gone succeed.
//! - Coalesced: changes to one row between flushes become one write of its latest values;
//!   an insert deleted before the flush writes nothing. Unchanged TOAST columns are left out.
//! - Ordered: parents before children (the mapping's order), so links always resolve; deletes
//!   children first.
//! - Nothing lost: a rejected batch is bisected down to the rows Airtable refuses, which go to
//!   sync_dead_letter with the payload and the error; the rest syncs and the stream moves on.

mod store;

pub use crate::airtable::{cells, AirtableClient, AirtableConfig, AirtableError, Budget, Lane};
pub use store::Store;

use super::{Destination, DestinationError, Poison};
use crate::postgres::dead_letter::{DeadLetter, Direction};
use crate::replication::{Event, Lsn, Op, RowChange, Value as PgValue};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use indexmap::IndexMap;
use schema::mapping::{MappedTable, Mapping};
use serde_json::{json, Map, Value};
use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Instant,
};
use uuid::Uuid;

/// What is pending for one row.
#[derive(Debug, Clone)]
enum Pending {
    Upsert {
        /// Latest values of outbound columns (JSON), unchanged TOAST columns absent.
        fields: Map<String, Value>,
        /// Every outbound column is present (an insert, or an update without unchanged TOAST).
        complete: bool,
        /// The row was inserted in this window: a delete cancels it without a write, unless
        /// the insert may already have reached Airtable in an earlier session.
        created_here: bool,
        /// Derived fields (program progress) to write with the row.
        derived: bool,
        /// Dead letters this write resolves when it succeeds (replays).
        replays: Vec<i64>,
        since: DateTime<Utc>,
    },
    Delete {
        replays: Vec<i64>,
        since: DateTime<Utc>,
    },
}

impl Pending {
    /// An upsert whose values are read from Postgres when it is written (resyncs, replays,
    /// parents written ahead of their children).
    fn reread(since: DateTime<Utc>, replays: Vec<i64>) -> Self {
        Pending::Upsert {
            fields: Map::new(),
            complete: false,
            created_here: false,
            derived: false,
            replays,
            since,
        }
    }
}

fn sql_err(e: sqlx::Error) -> DestinationError {
    e.into()
}

pub struct AirtableDestination {
    client: Arc<AirtableClient>,
    store: Store,
    mapping: Arc<Mapping>,
    config: AirtableConfig,
    pending: IndexMap<(usize, Uuid), Pending>,
    /// Table resyncs requested through the outbox (whole tables, done at flush).
    resync_tables: Vec<usize>,
    /// Dead letters to replay (through the outbox, so in stream order).
    replay_queue: Vec<i64>,
    outbox_done: Vec<i64>,
    first_pending: Option<Instant>,
    tx_time: DateTime<Utc>,
    /// Commit LSN of the transaction being handed (from Begin).
    tx_final: Lsn,
    /// Highest commit LSN whose changes may have been written to Airtable, by this session or
    /// an earlier one (persisted before each flush writes; None until read). Not a resume
    /// position — the slot is the only checkpoint — it only tells whether a redelivered
    /// change may already be in Airtable.
    possibly_written: Option<Lsn>,
    /// Highest commit LSN of the changes pending now.
    pending_final: Lsn,
    handed: Lsn,
    acked: Lsn,
    /// When the next reconcile is due.
    reconcile_at: Option<Instant>,
    /// The first transaction of this session was seen (to detect an unclean stop).
    started: bool,
    /// After an unclean stop nothing is written before this: writes the dead process had in
    /// flight land first, so none of them can overwrite a newer one.
    fence_until: Option<Instant>,
    /// Numbers batches for the logs.
    batches: std::sync::atomic::AtomicU64,
    /// Some outbound dead letter may be pending (refreshed at every flush).
    dead_letters_pending: std::sync::atomic::AtomicBool,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, DestinationError>> + Send + 'a>>;

impl AirtableDestination {
    /// The sink over `client` (shared with the inbound side: one budget, one connection
    /// pool to Airtable).
    pub fn new(client: Arc<AirtableClient>, mapping: Arc<Mapping>, pool: sqlx::PgPool) -> Self {
        let config = client.config().clone();
        let reconcile_at = config.reconcile_interval.map(|i| Instant::now() + i);
        Self {
            client,
            store: Store::new(pool),
            mapping,
            config,
            pending: IndexMap::new(),
            resync_tables: Vec::new(),
            replay_queue: Vec::new(),
            outbox_done: Vec::new(),
            first_pending: None,
            tx_time: Utc::now(),
            tx_final: Lsn::ZERO,
            possibly_written: None,
            pending_final: Lsn::ZERO,
            handed: Lsn::ZERO,
            acked: Lsn::ZERO,
            reconcile_at,
            started: false,
            fence_until: None,
            batches: std::sync::atomic::AtomicU64::new(0),
            dead_letters_pending: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn client(&self) -> &Arc<AirtableClient> {
        &self.client
    }

    /// Checks the mapping against the base's schema (`meta`, the Meta API's answer): every
    /// mapped table, the merge field and every outbound field with its type. Each problem
    /// names the Postgres table and column, and the Airtable table and field.
    pub fn validate_against_airtable(&self, meta: &Value) -> Result<(), String> {
        let tables = meta["tables"].as_array().cloned().unwrap_or_default();
        let mut problems = Vec::new();
        for t in &self.mapping.tables {
            let Some(at) = tables
                .iter()
                .find(|x| x["name"] == t.airtable.as_str() || x["id"] == t.airtable.as_str())
            else {
                problems.push(format!(
                    "Airtable has no table {:?} (mapped from {})",
                    t.airtable, t.table.name
                ));
                continue;
            };
            let fields = at["fields"].as_array().cloned().unwrap_or_default();
            let field = |name: &str| fields.iter().find(|f| f["name"] == name).cloned();
            match field(&self.mapping.merge_field) {
                None => problems
                    .push(format!("{}: no merge field {:?}", t.airtable, self.mapping.merge_field)),
                Some(f)
                    if !matches!(
                        f["type"].as_str(),
                        Some("singleLineText" | "number" | "multilineText")
                    ) =>
                {
                    problems.push(format!(
                        "{}.{}: type {} cannot be merged on",
                        t.airtable, self.mapping.merge_field, f["type"]
                    ))
                }
                Some(_) => {}
            }
            let columns = t
                .outbound()
                .map(|c| (c.column.as_str(), &c.field))
                .chain(t.derived.iter().map(|(column, f)| (column.as_str(), f)));
            for (column, c) in columns {
                let source = format!("Postgres column {}.{column}", t.table.name);
                match field(&c.field) {
                    None => problems.push(format!(
                        "Airtable table {:?} has no field {:?} (mapped from {})",
                        t.airtable, c.field, source
                    )),
                    Some(f) if f["type"] != c.kind.as_str() => problems.push(format!(
                        "Airtable field {:?}.{:?} is of type {} but the mapping says {} (mapped from {})",
                        t.airtable, c.field, f["type"], c.kind, source
                    )),
                    Some(_) => {}
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn table_index(&self, name: &str) -> Option<usize> {
        self.mapping.tables.iter().position(|t| t.table.name == name)
    }

    fn mapped(&self, ti: usize) -> &MappedTable {
        &self.mapping.tables[ti]
    }

    /// Outbound columns of a row as JSON; false when an unchanged TOAST value is missing.
    fn outbound_fields(
        &self,
        ti: usize,
        row: &crate::replication::Row,
    ) -> (Map<String, Value>, bool) {
        let mut fields = Map::new();
        let mut complete = true;
        for c in self.mapped(ti).outbound() {
            match row.get(&c.column) {
                Some(PgValue::Unchanged) | None => complete = false,
                Some(v) => {
                    fields.insert(c.column.clone(), v.to_json());
                }
            }
        }
        (fields, complete)
    }

    /// Whether the transaction being handed may have been written before (a redelivery).
    fn redelivered(&self) -> bool {
        self.possibly_written.is_some_and(|w| self.tx_final <= w)
    }

    fn pend(&mut self, key: (usize, Uuid), change: Pending) {
        self.first_pending.get_or_insert_with(Instant::now);
        self.pending_final = self.pending_final.max(self.tx_final);
        let merged = match (self.pending.shift_remove(&key), change) {
            (None, c) => Some(c),
            (
                Some(Pending::Upsert {
                    mut fields,
                    complete,
                    created_here,
                    derived,
                    mut replays,
                    since,
                }),
                Pending::Upsert { fields: f2, complete: c2, derived: d2, replays: r2, .. },
            ) => {
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                fields.extend(f2);
                replays.extend(r2);
                Some(Pending::Upsert {
                    fields,
                    complete: complete || c2,
                    created_here,
                    derived: derived || d2,
                    replays,
                    since,
                })
            }
            (Some(Pending::Upsert { created_here: true, .. }), Pending::Delete { .. }) => {
                // Inserted and deleted before any flush: Airtable never needs to know.
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                None
            }
            (Some(Pending::Upsert { replays, since, .. }), Pending::Delete { replays: r2, .. }) => {
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                Some(Pending::Delete { replays: replays.into_iter().chain(r2).collect(), since })
            }
            (
                Some(Pending::Delete { since, .. }),
                Pending::Upsert { fields, complete, derived, replays, .. },
            ) => {
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                Some(Pending::Upsert {
                    fields,
                    complete,
                    created_here: false,
                    derived,
                    replays,
                    since,
                })
            }
            (Some(Pending::Delete { mut replays, since }), Pending::Delete { replays: r2, .. }) => {
                replays.extend(r2);
                Some(Pending::Delete { replays, since })
            }
        };
        if let Some(m) = merged {
            self.pending.insert(key, m);
        }
    }

    fn on_change(&mut self, c: RowChange) -> Result<(), DestinationError> {
        let name = c.relation.name.as_str();
        if name == "sync_outbox" {
            if c.op == Op::Insert {
                if let Some(row) = &c.new {
                    self.on_intent(row.to_json());
                }
            }
            return Ok(());
        }
        let Some(ti) = self.table_index(name) else { return Ok(()) };
        let key_row = if c.op == Op::Delete { c.old.as_ref() } else { c.new.as_ref() };
        let Some(id) = key_row.and_then(|r| r.get("id")).and_then(|v| match v {
            PgValue::Uuid(u) => Some(*u),
            _ => None,
        }) else {
            return Err(DestinationError::bad_change(format!("{name}: change without a uuid id")));
        };
        let since = self.tx_time;
        match c.op {
            Op::Insert | Op::Update => {
                let Some(row) = c.new.as_ref() else { return Ok(()) };
                let (fields, complete) = self.outbound_fields(ti, row);
                // A change to Airtable-owned columns only has nothing to send.
                if c.op == Op::Update && fields.is_empty() {
                    return Ok(());
                }
                // Only an insert Airtable cannot have seen may be cancelled by a later delete.
                let created_here = c.op == Op::Insert && !self.redelivered();
                self.pend(
                    (ti, id),
                    Pending::Upsert {
                        fields,
                        complete,
                        created_here,
                        derived: false,
                        replays: Vec::new(),
                        since,
                    },
                );
            }
            Op::Delete => self.pend((ti, id), Pending::Delete { replays: Vec::new(), since }),
        }
        Ok(())
    }

    /// An outbox intent: resync a row or a table, replay a dead letter, refresh progress.
    fn on_intent(&mut self, row: Map<String, Value>) {
        let outbox_id = row.get("id").and_then(Value::as_i64);
        let kind = row.get("kind").and_then(Value::as_str).unwrap_or("");
        let table = row.get("table_name").and_then(Value::as_str).unwrap_or("");
        let pg_id = row.get("pg_id").and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok());
        let since = self.tx_time;
        match (kind, self.table_index(table), pg_id) {
            ("resync", Some(ti), Some(id)) => {
                self.pend((ti, id), Pending::reread(since, Vec::new()))
            }
            ("resync", Some(ti), None) => {
                self.first_pending.get_or_insert_with(Instant::now);
                self.resync_tables.push(ti);
            }
            ("progress", Some(ti), Some(id)) => self.pend(
                (ti, id),
                Pending::Upsert {
                    fields: Map::new(),
                    complete: false,
                    created_here: false,
                    derived: true,
                    replays: Vec::new(),
                    since,
                },
            ),
            ("replay", _, _) => {
                if let Some(dl) =
                    row.get("payload").and_then(|p| p.get("dead_letter_id")).and_then(Value::as_i64)
                {
                    self.first_pending.get_or_insert_with(Instant::now);
                    self.replay_queue.push(dl);
                }
            }
            _ => tracing::warn!(?row, "ignoring an outbox intent this build does not understand"),
        }
        if let Some(id) = outbox_id {
            self.outbox_done.push(id);
        }
    }
}

/// One record being upserted: its pg id, Airtable fields, and bookkeeping.
#[derive(Debug, Clone)]
struct Outgoing {
    id: Uuid,
    fields: Map<String, Value>,
    replays: Vec<i64>,
    since: DateTime<Utc>,
}

impl AirtableDestination {
    /// Writes everything pending; afterwards everything handed so far is acknowledged.
    async fn flush_all(&mut self) -> Result<(), DestinationError> {
        let upto = self.handed;
        if self.pending.is_empty()
            && self.replay_queue.is_empty()
            && self.resync_tables.is_empty()
            && self.outbox_done.is_empty()
        {
            self.acked = self.acked.max(upto);
            return Ok(());
        }
        if let Some(until) = self.fence_until.take() {
            tokio::time::sleep_until(until.into()).await;
        }
        let mark = self.pending_final.max(upto);
        if self.possibly_written.is_none_or(|w| mark > w)
            && (!self.pending.is_empty()
                || !self.replay_queue.is_empty()
                || !self.resync_tables.is_empty())
        {
            self.store.set_possibly_written(mark).await.map_err(sql_err)?;
            self.possibly_written = Some(mark);
        }
        for dl in std::mem::take(&mut self.replay_queue) {
            match self.store.dead_letter_row(dl).await.map_err(sql_err)? {
                Some((Some(table), Some(id), op)) => match self.table_index(&table) {
                    Some(ti) => {
                        let since = Utc::now();
                        let change = if op == "delete" {
                            Pending::Delete { replays: vec![dl], since }
                        } else {
                            Pending::reread(since, vec![dl])
                        };
                        self.pend((ti, id), change);
                    }
                    None => {
                        tracing::warn!(dead_letter = dl, %table, "cannot replay: table not mapped")
                    }
                },
                _ => tracing::warn!(
                    dead_letter = dl,
                    "nothing to replay (not pending, or not an outbound row)"
                ),
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let mut upserts: Vec<Vec<(Uuid, Pending)>> = vec![Vec::new(); self.mapping.tables.len()];
        let mut deletes: Vec<Vec<(Uuid, Pending)>> = vec![Vec::new(); self.mapping.tables.len()];
        for ((ti, id), p) in pending {
            match p {
                Pending::Upsert { .. } => upserts[ti].push((id, p)),
                Pending::Delete { .. } => deletes[ti].push((id, p)),
            }
        }
        for (ti, rows) in upserts.into_iter().enumerate() {
            if !rows.is_empty() {
                self.upsert_rows(ti, rows).await?;
            }
        }
        for (ti, rows) in deletes.into_iter().enumerate().rev() {
            if !rows.is_empty() {
                self.delete_rows(ti, rows).await?;
            }
        }
        for ti in std::mem::take(&mut self.resync_tables) {
            self.resync_table(ti).await?;
        }
        let done = std::mem::take(&mut self.outbox_done);
        self.store.purge_outbox(&done).await.map_err(sql_err)?;
        if let Ok((all, outbound)) = self.store.pending_dead_letters().await {
            metrics::gauge!("sync_dlq_pending").set(all as f64);
            self.dead_letters_pending.store(outbound > 0, std::sync::atomic::Ordering::Relaxed);
        }
        self.first_pending = None;
        self.pending_final = Lsn::ZERO;
        self.acked = self.acked.max(upto);
        Ok(())
    }

    /// Re-sends every row of a table, a page at a time (bounded memory).
    async fn resync_table(&mut self, ti: usize) -> Result<(), DestinationError> {
        let table = self.mapped(ti).table.name;
        let mut after = None;
        loop {
            let ids = self.store.ids_after(table, after, 1000).await.map_err(sql_err)?;
            let Some(last) = ids.last().copied() else { return Ok(()) };
            let since = Utc::now();
            let rows = ids.into_iter().map(|id| (id, Pending::reread(since, Vec::new()))).collect();
            self.upsert_rows(ti, rows).await?;
            after = Some(last);
        }
    }

    /// Upserts rows of one table: completes them from Postgres where needed, resolves their
    /// links (creating missing parents first), and sends them in batches of 10.
    fn upsert_rows(&mut self, ti: usize, rows: Vec<(Uuid, Pending)>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let table = self.mapped(ti).table.name;
            let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
            let known = self.store.record_ids(table, &ids).await.map_err(sql_err)?;
            // Rows Airtable may not have yet are written whole; read what the stream lacks.
            let need_read: Vec<Uuid> = rows
                .iter()
                .filter(|(id, p)| matches!(p, Pending::Upsert { complete, .. } if !*complete && !known.contains_key(id)) || matches!(p, Pending::Upsert { fields, .. } if fields.is_empty()))
                .map(|(id, _)| *id)
                .collect();
            let current = self.store.rows(table, &need_read).await.map_err(sql_err)?;
            let derived_ids: Vec<Uuid> = rows
                .iter()
                .filter(|(_, p)| matches!(p, Pending::Upsert { derived: true, .. }))
                .map(|(id, _)| *id)
                .collect();
            let progress = if derived_ids.is_empty() {
                HashMap::new()
            } else {
                self.store.progress(&derived_ids).await.map_err(sql_err)?
            };

            let mut outgoing = Vec::new();
            for (id, p) in rows {
                let Pending::Upsert { mut fields, derived, replays, since, .. } = p else {
                    continue;
                };
                if let Some(row) = current.get(&id) {
                    for c in self.mapped(ti).outbound() {
                        if !fields.contains_key(&c.column) {
                            fields.insert(
                                c.column.clone(),
                                row.get(&c.column).cloned().unwrap_or(Value::Null),
                            );
                        }
                    }
                } else if need_read.contains(&id) {
                    // Gone from Postgres since: its delete follows in the stream.
                    continue;
                }
                let mut record = Map::new();
                record.insert(self.mapping.merge_field.clone(), json!(id.to_string()));
                let mut bad = None;
                for c in self.mapped(ti).outbound() {
                    if let Some(v) = fields.get(&c.column) {
                        if c.field.link.is_some() {
                            record.insert(c.field.field.clone(), v.clone());
                        } else {
                            match cells::cell(&c.field.kind, v) {
                                Ok(cell) => {
                                    record.insert(c.field.field.clone(), cell);
                                }
                                Err(e) => {
                                    // The payload keeps the value as Postgres has it.
                                    record.insert(c.field.field.clone(), v.clone());
                                    bad = Some((e.code(), format!("{}.{}: {e}", table, c.column)));
                                }
                            }
                        }
                    }
                }
                if derived {
                    if let Some(pr) = progress.get(&id) {
                        for (column, f) in &self.mapped(ti).derived {
                            record.insert(
                                f.field.clone(),
                                pr.get(column).cloned().unwrap_or(Value::Null),
                            );
                        }
                    }
                }
                match bad {
                    Some((code, message)) => {
                        self.dead_letter(
                            table,
                            Some(id),
                            "upsert",
                            Value::Object(record),
                            code,
                            &message,
                            1,
                        )
                        .await?;
                    }
                    None => outgoing.push(Outgoing { id, fields: record, replays, since }),
                }
            }
            let outgoing = self.resolve_links(ti, outgoing).await?;
            let batches: Vec<Vec<Outgoing>> =
                outgoing.chunks(10).map(<[Outgoing]>::to_vec).collect();
            let this = &*self;
            let results: Vec<Result<(), DestinationError>> = stream::iter(batches)
                .map(|b| this.send_upserts(ti, b))
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            results.into_iter().collect()
        })
    }

    /// Turns link columns (pg uuids) into Airtable record ids. Missing Postgres-owned parents
    /// are written first; a row whose link cannot be resolved is dead-lettered, never sent
    /// half-linked.
    async fn resolve_links(
        &mut self,
        ti: usize,
        mut outgoing: Vec<Outgoing>,
    ) -> Result<Vec<Outgoing>, DestinationError> {
        let link_columns: Vec<(String, String)> = self
            .mapped(ti)
            .outbound()
            .filter_map(|c| c.field.link.clone().map(|l| (c.field.field.clone(), l)))
            .collect();
        if link_columns.is_empty() {
            return Ok(outgoing);
        }
        let mut resolved: HashMap<String, HashMap<Uuid, String>> = HashMap::new();
        for (field, target) in &link_columns {
            let wanted: Vec<Uuid> = outgoing
                .iter()
                .flat_map(|o| o.fields.get(field).map(cells::link_ids).unwrap_or_default())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut map = self.store.record_ids(target, &wanted).await.map_err(sql_err)?;
            let missing: Vec<Uuid> =
                wanted.iter().filter(|id| !map.contains_key(id)).copied().collect();
            if let Some(tti) = self.table_index(target) {
                let outbound_capable = self.mapped(tti).outbound().next().is_some();
                if !missing.is_empty() && outbound_capable && tti != ti {
                    let since = Utc::now();
                    let parents = missing
                        .iter()
                        .map(|id| (*id, Pending::reread(since, Vec::new())))
                        .collect();
                    self.upsert_rows(tti, parents).await?;
                    map = self.store.record_ids(target, &wanted).await.map_err(sql_err)?;
                }
                if !missing.is_empty() && tti == ti {
                    // Links within the table (none in the default mapping): look up what exists.
                    map.extend(self.store.record_ids(target, &missing).await.map_err(sql_err)?);
                }
            }
            resolved.insert(field.clone(), map);
        }
        let table = self.mapped(ti).table.name;
        let mut ready = Vec::with_capacity(outgoing.len());
        for mut o in outgoing.drain(..) {
            let mut unresolved = Vec::new();
            for (field, target) in &link_columns {
                if let Some(v) = o.fields.get(field).cloned() {
                    let ids = cells::link_ids(&v);
                    let map = &resolved[field];
                    let recs: Vec<Value> =
                        ids.iter().filter_map(|id| map.get(id).map(|r| json!(r))).collect();
                    if recs.len() != ids.len() {
                        unresolved.push(format!(
                            "{field} -> {target} {:?}",
                            ids.iter().filter(|id| !map.contains_key(id)).collect::<Vec<_>>()
                        ));
                    }
                    o.fields.insert(field.clone(), Value::Array(recs));
                }
            }
            if unresolved.is_empty() {
                ready.push(o);
            } else {
                let message = format!(
                    "links to rows Airtable does not have (no airtable_id_map entry): {}; sync those records (the inbound reconcile maps Airtable-owned ones), then `cdc dlq replay`",
                    unresolved.join("; ")
                );
                self.dead_letter(
                    table,
                    Some(o.id),
                    "upsert",
                    Value::Object(o.fields),
                    "LINK_UNRESOLVED",
                    &message,
                    1,
                )
                .await?;
            }
        }
        Ok(ready)
    }

    /// Sends one batch; on a rejection splits it to isolate the refused rows.
    fn send_upserts(&self, ti: usize, batch: Vec<Outgoing>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let t = self.mapped(ti);
            let batch_id = self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            let records: Vec<Map<String, Value>> = batch.iter().map(|o| o.fields.clone()).collect();
            match self
                .client
                .upsert(Lane::Bulk, &t.airtable, &self.mapping.merge_field, &records)
                .await
            {
                Ok(record_ids) => {
                    let pairs: Vec<(Uuid, String)> =
                        batch.iter().map(|o| o.id).zip(record_ids).collect();
                    self.store.save_record_ids(t.table.name, &pairs).await.map_err(sql_err)?;
                    let ids: Vec<Uuid> = batch.iter().map(|o| o.id).collect();
                    self.written(t.table.name, &ids).await?;
                    let now = Utc::now();
                    for o in &batch {
                        metrics::histogram!("sync_commit_to_airtable_seconds")
                            .record((now - o.since).num_milliseconds().max(0) as f64 / 1000.0);
                        for dl in &o.replays {
                            self.store.resolve_dead_letter(*dl).await.map_err(sql_err)?;
                        }
                    }
                    tracing::info!(
                        batch = batch_id,
                        table = t.table.name,
                        records = batch.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "upserted batch"
                    );
                    Ok(())
                }
                Err(e @ AirtableError::Rejected { .. }) if batch.len() > 1 => {
                    tracing::warn!(batch = batch_id, table = t.table.name, records = batch.len(), error = %e, "batch rejected; splitting to find the refused rows");
                    let (a, b) = batch.split_at(batch.len() / 2);
                    self.send_upserts(ti, a.to_vec()).await?;
                    self.send_upserts(ti, b.to_vec()).await
                }
                Err(e) => {
                    for o in batch {
                        self.fail(
                            t.table.name,
                            o.id,
                            "upsert",
                            Value::Object(o.fields),
                            &e,
                            &o.replays,
                        )
                        .await?;
                    }
                    Ok(())
                }
            }
        })
    }

    async fn delete_rows(
        &mut self,
        ti: usize,
        rows: Vec<(Uuid, Pending)>,
    ) -> Result<(), DestinationError> {
        let t = self.mapped(ti).clone();
        let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        let replays: HashMap<Uuid, Vec<i64>> = rows
            .into_iter()
            .map(|(id, p)| {
                (
                    id,
                    match p {
                        Pending::Delete { replays, .. } | Pending::Upsert { replays, .. } => {
                            replays
                        }
                    },
                )
            })
            .collect();
        let mut targets: HashMap<Uuid, String> =
            self.store.record_ids(t.table.name, &ids).await.map_err(sql_err)?;
        let unknown: Vec<String> =
            ids.iter().filter(|id| !targets.contains_key(id)).map(Uuid::to_string).collect();
        if !unknown.is_empty() {
            match self
                .client
                .find_by_merge(Lane::Bulk, &t.airtable, &self.mapping.merge_field, &unknown)
                .await
            {
                Ok(found) => targets
                    .extend(found.into_iter().filter_map(|(v, r)| Some((v.parse().ok()?, r)))),
                Err(e) => {
                    for id in ids.iter().filter(|id| !targets.contains_key(id)) {
                        self.fail(t.table.name, *id, "delete", json!({}), &e, &replays[id]).await?;
                    }
                }
            }
        }
        let list: Vec<(Uuid, String)> = targets.into_iter().collect();
        for chunk in list.chunks(10) {
            let recs: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let outcome = match self.client.delete(Lane::Bulk, &t.airtable, &recs).await {
                Err(e) if e.is_gone() && chunk.len() > 1 => {
                    // One of them is gone already: delete one by one, gone counts as done.
                    for (id, rec) in chunk {
                        match self
                            .client
                            .delete(Lane::Bulk, &t.airtable, std::slice::from_ref(rec))
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_gone() => {}
                            Err(e) => {
                                self.fail(
                                    t.table.name,
                                    *id,
                                    "delete",
                                    json!({ "record": rec }),
                                    &e,
                                    &replays[id],
                                )
                                .await?
                            }
                        }
                    }
                    Ok(())
                }
                Err(e) if e.is_gone() => Ok(()),
                other => other,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(table = t.table.name, records = chunk.len(), "deleted batch");
                    let gone: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
                    self.written(t.table.name, &gone).await?;
                    for (id, _) in chunk {
                        for dl in &replays[id] {
                            self.store.resolve_dead_letter(*dl).await.map_err(sql_err)?;
                        }
                    }
                }
                Err(e) => {
                    for (id, rec) in chunk {
                        self.fail(
                            t.table.name,
                            *id,
                            "delete",
                            json!({ "record": rec }),
                            &e,
                            &replays[id],
                        )
                        .await?;
                    }
                }
            }
        }
        // Rows never in Airtable (and not found there) are done too.
        for id in ids.iter().filter(|id| !list.iter().any(|(x, _)| x == *id)) {
            for dl in &replays[id] {
                self.store.resolve_dead_letter(*dl).await.map_err(sql_err)?;
            }
        }
        self.store.forget_record_ids(t.table.name, &ids).await.map_err(sql_err)?;
        Ok(())
    }

    /// Truncate: every record of the table known to the id map goes.
    async fn truncate(&mut self, ti: usize) -> Result<(), DestinationError> {
        let table = self.mapped(ti).table.name;
        let mapped = self.store.all_mapped(table).await.map_err(sql_err)?;
        let since = Utc::now();
        let rows = mapped
            .into_iter()
            .map(|(id, _)| (id, Pending::Delete { replays: Vec::new(), since }))
            .collect();
        self.delete_rows(ti, rows).await
    }

    /// A write failed: dead-letter it (or count another attempt of a replay) when the record
    /// is at fault. When the daemon is (an auth error), or Airtable stayed unreachable past
    /// every retry, no record is: the error goes to the stream, which pauses and hands
    /// everything again later.
    async fn fail(
        &self,
        table: &str,
        id: Uuid,
        operation: &'static str,
        payload: Value,
        e: &AirtableError,
        replays: &[i64],
    ) -> Result<(), DestinationError> {
        match e {
            AirtableError::Unauthorized { .. } => {
                return Err(DestinationError::auth(e.to_string()).with_source(e.clone()))
            }
            AirtableError::Exhausted { .. } => {
                return Err(DestinationError::retry(e.to_string()).with_source(e.clone()))
            }
            AirtableError::Rejected { .. } => {}
        }
        tracing::warn!(table, pg_id = %id, operation, error = %e, "dead-lettered");
        if replays.is_empty() {
            self.dead_letter(
                table,
                Some(id),
                operation,
                payload,
                &e.code(),
                &e.to_string(),
                e.attempts() as i32,
            )
            .await
        } else {
            for dl in replays {
                self.store.retry_failed(*dl, &e.code(), &e.to_string()).await.map_err(sql_err)?;
            }
            Ok(())
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &self,
        table: &str,
        id: Option<Uuid>,
        operation: &'static str,
        payload: Value,
        code: &str,
        message: &str,
        attempts: i32,
    ) -> Result<(), DestinationError> {
        let d = DeadLetter {
            direction: Direction::Outbound,
            table: Some(table.to_owned()),
            pg_id: id,
            record_id: None,
            operation,
            payload,
            code: code.to_owned(),
            message: message.to_owned(),
            attempts,
        };
        self.store.dead_letter(&d).await.map_err(sql_err)?;
        self.dead_letters_pending.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Rows just written: their pending dead letters are resolved (skipped while none is
    /// pending, which is the common case).
    async fn written(&self, table: &str, ids: &[Uuid]) -> Result<(), DestinationError> {
        if self.dead_letters_pending.load(std::sync::atomic::Ordering::Relaxed) {
            let n = self.store.resolve_rows(table, ids).await.map_err(sql_err)?;
            if n > 0 {
                tracing::info!(table, resolved = n, "later writes resolved dead letters");
            }
        }
        Ok(())
    }

    /// Makes Airtable equal Postgres for every outbound table: records whose pg id is gone
    /// from Postgres are deleted, duplicates of a pg id removed, rows Airtable lacks re-sent,
    /// and the id map corrected. Records without a pg id (made by hand in Airtable) are left
    /// alone. Catches what no event can: a write a dead process had in flight that landed
    /// after its row was deleted.
    pub async fn reconcile(&mut self) -> Result<(), DestinationError> {
        let started = Instant::now();
        self.flush_all().await?;
        let (mut orphans, mut duplicates, mut missing) = (0u64, 0u64, 0u64);
        for ti in 0..self.mapping.tables.len() {
            if self.mapped(ti).outbound().next().is_none() {
                continue;
            }
            let t = self.mapped(ti).clone();
            let listed = match self
                .client
                .list_merge_values(Lane::Bulk, &t.airtable, &self.mapping.merge_field)
                .await
            {
                Ok(l) => l,
                Err(e) if e.is_auth() => return Err(DestinationError::auth(e.to_string())),
                Err(e) => {
                    tracing::warn!(table = t.table.name, error = %e, "reconcile: cannot list Airtable; will try again");
                    continue;
                }
            };
            let in_pg: HashSet<Uuid> =
                self.store.all_ids(t.table.name).await.map_err(sql_err)?.into_iter().collect();
            let mapped = self
                .store
                .record_ids(t.table.name, &in_pg.iter().copied().collect::<Vec<_>>())
                .await
                .map_err(sql_err)?;
            let mut seen: HashMap<Uuid, String> = HashMap::new();
            let mut remove: Vec<String> = Vec::new();
            for (value, record) in listed {
                let Ok(id) = value.parse::<Uuid>() else { continue };
                if !in_pg.contains(&id) {
                    orphans += 1;
                    remove.push(record);
                } else if let Some(kept) = seen.get(&id) {
                    // Keep the record the id map points at.
                    duplicates += 1;
                    if mapped.get(&id) == Some(&record) {
                        remove.push(kept.clone());
                        seen.insert(id, record);
                    } else {
                        remove.push(record);
                    }
                } else {
                    seen.insert(id, record);
                }
            }
            for chunk in remove.chunks(10) {
                match self.client.delete(Lane::Bulk, &t.airtable, chunk).await {
                    Ok(()) => {}
                    Err(e) if e.is_gone() => {
                        for rec in chunk {
                            let _ = self
                                .client
                                .delete(Lane::Bulk, &t.airtable, std::slice::from_ref(rec))
                                .await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(table = t.table.name, error = %e, "reconcile: delete failed; next reconcile retries")
                    }
                }
            }
            let pairs: Vec<(Uuid, String)> = seen
                .iter()
                .filter(|(id, rec)| mapped.get(id) != Some(rec))
                .map(|(id, rec)| (*id, rec.clone()))
                .collect();
            self.store.save_record_ids(t.table.name, &pairs).await.map_err(sql_err)?;
            let since = Utc::now();
            let absent: Vec<(Uuid, Pending)> = in_pg
                .iter()
                .filter(|id| !seen.contains_key(id))
                .map(|id| (*id, Pending::reread(since, Vec::new())))
                .collect();
            missing += absent.len() as u64;
            if !absent.is_empty() {
                self.upsert_rows(ti, absent).await?;
            }
        }
        metrics::counter!("sync_reconcile_runs_total").increment(1);
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "orphan").increment(orphans);
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "duplicate")
            .increment(duplicates);
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "missing").increment(missing);
        tracing::info!(
            orphans,
            duplicates,
            missing,
            ms = started.elapsed().as_millis() as u64,
            "reconciled Airtable with Postgres"
        );
        self.reconcile_at = self.config.reconcile_interval.map(|i| Instant::now() + i);
        Ok(())
    }

    fn due(&self) -> bool {
        self.pending.len() >= self.config.max_pending_rows
            || self.first_pending.is_some_and(|t| t.elapsed() >= self.config.flush_window)
    }
}

impl AirtableDestination {
    /// After a failure the stream hands everything unacknowledged again: drop what this
    /// session had pending (a flush may have taken part of it) and forget what was handed,
    /// so nothing is acknowledged that did not reach Airtable.
    fn abandon(&mut self) {
        self.pending.clear();
        self.resync_tables.clear();
        self.replay_queue.clear();
        self.outbox_done.clear();
        self.first_pending = None;
        self.pending_final = Lsn::ZERO;
        self.handed = self.acked;
    }

    async fn handle_event(&mut self, event: Event) -> Result<(), DestinationError> {
        if self.possibly_written.is_none() {
            self.possibly_written = Some(self.store.possibly_written().await.map_err(sql_err)?);
        }
        match event {
            Event::Begin { commit_time, final_lsn, .. } => {
                self.tx_time = commit_time;
                self.tx_final = final_lsn;
                if !self.started {
                    self.started = true;
                    if self.redelivered() {
                        // An unclean stop: a write the dead process had in flight may land
                        // after this session handled that row. Reconcile once they are in.
                        let at = Instant::now() + self.config.reconcile_delay;
                        tracing::info!(delay = ?self.config.reconcile_delay, "restarted after an unclean stop: writing resumes after the grace period, then a reconcile");
                        self.fence_until = Some(at);
                        self.reconcile_at = Some(self.reconcile_at.map_or(at, |r| r.min(at)));
                    }
                }
            }
            Event::Change(c) => self.on_change(c)?,
            Event::Truncate { relations, .. } => {
                let tables: Vec<usize> =
                    relations.iter().filter_map(|r| self.table_index(&r.name)).collect();
                if !tables.is_empty() {
                    // Everything before the truncate goes first.
                    self.flush_all().await?;
                    for ti in tables {
                        self.truncate(ti).await?;
                    }
                }
            }
            Event::Message { transactional: false, lsn, .. } => self.handed = self.handed.max(lsn),
            Event::Message { .. } => {}
            Event::Commit { end_lsn, .. } => {
                self.handed = self.handed.max(end_lsn);
                if self.pending.is_empty()
                    && self.resync_tables.is_empty()
                    && self.replay_queue.is_empty()
                    && self.outbox_done.is_empty()
                {
                    // Nothing of it needs Airtable (e.g. only Airtable-owned columns changed).
                    self.acked = self.acked.max(end_lsn);
                }
            }
        }
        if self.due() {
            self.flush_all().await?;
        }
        Ok(())
    }

    async fn flush_and_reconcile(&mut self) -> Result<(), DestinationError> {
        self.flush_all().await?;
        if self.reconcile_at.is_some_and(|at| Instant::now() >= at) {
            self.reconcile().await?;
        }
        Ok(())
    }
}

impl Destination for AirtableDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        let result = self.handle_event(event).await;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    async fn flush(&mut self) -> Result<(), DestinationError> {
        let result = self.flush_and_reconcile().await;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn acknowledged(&self) -> Lsn {
        self.acked
    }

    /// An isolated change becomes one outbound dead letter (`ISOLATED_CHANGE`) of its table
    /// and row, where known; `cdc dlq replay` re-sends the row's current state.
    async fn isolate(&mut self, poison: Poison) -> Result<(), DestinationError> {
        let pg_id = poison.payload.get("id").and_then(Value::as_str).and_then(|s| s.parse().ok());
        let message = format!(
            "the stream gave up on this change after {} deliveries (transaction {}, change {}): {}",
            poison.attempts, poison.transaction, poison.ordinal, poison.reason
        );
        tracing::error!(table = ?poison.table, ?pg_id, %message, "isolated a change");
        let d = DeadLetter {
            direction: Direction::Outbound,
            table: poison.table,
            pg_id,
            record_id: None,
            operation: "change",
            payload: poison.payload,
            code: "ISOLATED_CHANGE".into(),
            message,
            attempts: poison.attempts as i32,
        };
        self.store.dead_letter(&d).await.map_err(sql_err)?;
        self.dead_letters_pending.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
