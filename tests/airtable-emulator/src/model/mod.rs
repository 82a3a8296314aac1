//! The emulated bases: tables, records and webhooks, and the record operations. Every write
//! is validated completely before anything changes, so a rejected batch changes nothing.

pub mod field;
mod list;
mod schema;
pub mod table;

use crate::{clock::whole_seconds, config::SchemaFile, error::ApiError, ids, webhooks::Webhook};
use chrono::{DateTime, Utc};
use field::{infer_kind, Class, Field};
use indexmap::IndexMap;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use table::{Record, Table};

pub use list::{ListParams, ListedPage, SortSpec};

/// Every base, plus the open list iterators.
#[derive(Debug, Default)]
pub struct World {
    pub bases: IndexMap<String, Base>,
    pub iterators: HashMap<String, list::Iterator>,
    /// Bases and tables are created on first use when no schema file was given.
    pub inferred: bool,
    /// Records that exist but listings leave out (a partial outage, a pagination bug, a
    /// mis-set view); gets by id still find them.
    pub hidden: std::collections::HashSet<String>,
}

#[derive(Debug)]
pub struct Base {
    pub id: String,
    pub name: String,
    pub tables: Vec<Table>,
    pub webhooks: Vec<Webhook>,
    /// Numbers the base's write transactions (webhook payloads' baseTransactionNumber).
    pub next_transaction: u64,
}

/// What one transaction changed, per table id; read by webhook payload generation.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub tables: IndexMap<String, TableChanges>,
}

#[derive(Debug, Default, Clone)]
pub struct TableChanges {
    pub created: Vec<String>,
    /// Record id -> previous value of each changed field (None: was empty).
    pub changed: IndexMap<String, IndexMap<String, Option<Value>>>,
    pub destroyed: Vec<String>,
}

impl TableChanges {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.changed.is_empty() && self.destroyed.is_empty()
    }
}

impl Changes {
    fn table(&mut self, table_id: &str) -> &mut TableChanges {
        self.tables.entry(table_id.to_owned()).or_default()
    }

    fn record_change(
        &mut self,
        table_id: &str,
        record_id: &str,
        field_id: &str,
        previous: Option<Value>,
    ) {
        let t = self.table(table_id);
        if t.created.iter().any(|c| c == record_id) {
            return;
        }
        t.changed
            .entry(record_id.to_owned())
            .or_default()
            .entry(field_id.to_owned())
            .or_insert(previous);
    }

    pub fn is_empty(&self) -> bool {
        self.tables.values().all(TableChanges::is_empty)
    }
}

/// One record to write: an optional id and its fields as sent (names or ids as keys).
#[derive(Debug, Clone)]
pub struct RecordInput {
    pub id: Option<String>,
    pub fields: Map<String, Value>,
}

/// How an upsert matches and writes.
#[derive(Debug, Clone, Copy)]
pub struct UpsertOptions<'a> {
    /// 1–3 field names or ids.
    pub merge_on: &'a [String],
    /// PUT semantics: clear the fields not sent.
    pub replace: bool,
    pub typecast: bool,
    /// Error type when merge fields match more than one record.
    pub multiple_match_error: &'static str,
}

/// The result of an upsert: every record in request order, split into created/updated.
#[derive(Debug, Default)]
pub struct UpsertOutcome {
    pub records: Vec<String>,
    pub created: Vec<String>,
    pub updated: Vec<String>,
}

impl World {
    pub fn from_schema(schema: &SchemaFile) -> Result<Self, String> {
        let mut world = World::default();
        for b in &schema.bases {
            let base_id = b.id.clone().unwrap_or_else(|| ids::new_id("app"));
            let mut tables = Vec::new();
            for t in &b.tables {
                let fields: Vec<Field> = t
                    .fields
                    .iter()
                    .map(|f| Field {
                        id: f.id.clone().unwrap_or_else(|| ids::new_id("fld")),
                        name: f.name.clone(),
                        kind: f.kind.clone(),
                        options: f.options.clone().unwrap_or(json!({})),
                    })
                    .collect();
                let mut table = Table::new(
                    t.id.clone().unwrap_or_else(|| ids::new_id("tbl")),
                    t.name.clone(),
                    fields,
                    false,
                );
                table.description = t.description.clone();
                if let Some(primary) = &t.primary_field {
                    table.primary_field_id = table
                        .field(primary)
                        .ok_or(format!("{}: no primary field {primary}", t.name))?
                        .id
                        .clone();
                }
                tables.push(table);
            }
            // Links may name their table; resolve to ids now that every table has one.
            let names: Vec<(String, String)> =
                tables.iter().map(|t| (t.name.clone(), t.id.clone())).collect();
            for table in &mut tables {
                for f in &mut table.fields {
                    if f.kind == "multipleRecordLinks" {
                        if let Some(name) =
                            f.options.get("linkedTable").and_then(Value::as_str).map(str::to_owned)
                        {
                            let id = names
                                .iter()
                                .find(|(n, _)| *n == name)
                                .map(|(_, id)| id.clone())
                                .ok_or(format!("{}.{}: no table {name}", table.name, f.name))?;
                            f.options["linkedTableId"] = json!(id);
                            if let Some(o) = f.options.as_object_mut() {
                                o.remove("linkedTable");
                            }
                        }
                    }
                }
            }
            world.bases.insert(
                base_id.clone(),
                Base {
                    id: base_id,
                    name: b.name.clone(),
                    tables,
                    webhooks: Vec::new(),
                    next_transaction: 1,
                },
            );
        }
        Ok(world)
    }

    /// A base by id; created on first use when the schema is inferred.
    pub fn base_mut(&mut self, base_id: &str) -> Result<&mut Base, ApiError> {
        if !self.bases.contains_key(base_id) {
            if !self.inferred || !ids::is_id(base_id, "app") {
                return Err(ApiError::model_not_found());
            }
            self.bases.insert(
                base_id.to_owned(),
                Base {
                    id: base_id.to_owned(),
                    name: base_id.to_owned(),
                    tables: Vec::new(),
                    webhooks: Vec::new(),
                    next_transaction: 1,
                },
            );
        }
        self.bases.get_mut(base_id).ok_or_else(ApiError::model_not_found)
    }
}

impl Base {
    /// A table by id or name; in inferred mode a new name creates the table.
    pub fn table_index(&mut self, id_or_name: &str, inferred: bool) -> Result<usize, ApiError> {
        if let Some(i) = self
            .tables
            .iter()
            .position(|t| t.id == id_or_name)
            .or_else(|| self.tables.iter().position(|t| t.name == id_or_name))
        {
            return Ok(i);
        }
        if !inferred || ids::is_id(id_or_name, "tbl") {
            return Err(ApiError::model_not_found());
        }
        let primary = Field {
            id: ids::new_id("fld"),
            name: "Name".into(),
            kind: "singleLineText".into(),
            options: json!({}),
        };
        self.tables.push(Table::new(
            ids::new_id("tbl"),
            id_or_name.to_owned(),
            vec![primary],
            true,
        ));
        Ok(self.tables.len() - 1)
    }

    pub fn table_by_id(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    fn take_transaction(&mut self) -> u64 {
        let n = self.next_transaction;
        self.next_transaction += 1;
        n
    }

    /// Validates `fields` for table `ti` without changing anything.
    fn plan_fields(
        &self,
        ti: usize,
        fields: &Map<String, Value>,
        typecast: bool,
        planned: &mut Vec<Field>,
    ) -> Result<Vec<(String, field::Coerced)>, ApiError> {
        let table = &self.tables[ti];
        let mut out = Vec::with_capacity(fields.len());
        for (key, value) in fields {
            let field = match table
                .field(key)
                .or_else(|| planned.iter().find(|f| f.name == *key || f.id == *key))
            {
                Some(f) => f.clone(),
                None if table.inferred => {
                    if value.is_null() {
                        continue;
                    }
                    let f = Field {
                        id: ids::new_id("fld"),
                        name: key.clone(),
                        kind: infer_kind(value).into(),
                        options: json!({}),
                    };
                    planned.push(f.clone());
                    f
                }
                None => return Err(ApiError::unknown_field(key)),
            };
            // Inferred select fields have no fixed choices: accept new ones.
            let coerced = field.coerce(value, typecast || table.inferred)?;
            if field.class() == Class::Links {
                if let (Some(linked_id), Some(Value::Array(targets))) =
                    (field.linked_table_id(), &coerced.value)
                {
                    let linked = self
                        .table_by_id(linked_id)
                        .ok_or_else(|| ApiError::invalid_value(&field.name))?;
                    for t in targets.iter().filter_map(Value::as_str) {
                        if !linked.records.contains_key(t) {
                            return Err(ApiError::row_does_not_exist(t));
                        }
                    }
                }
            }
            out.push((field.id.clone(), coerced));
        }
        Ok(out)
    }

    /// Applies a validated plan to record `rid` of table `ti`.
    fn apply_fields(
        &mut self,
        ti: usize,
        rid: &str,
        plan: Vec<(String, field::Coerced)>,
        replace: bool,
        now: DateTime<Utc>,
        changes: &mut Changes,
    ) {
        let table_id = self.tables[ti].id.clone();
        let mut writes: Vec<(String, Option<Value>)> = Vec::new();
        for (fid, coerced) in plan {
            for choice in &coerced.new_choices {
                if let Some(f) = self.tables[ti].field_mut(&fid) {
                    f.add_choice(choice);
                }
            }
            writes.push((fid, coerced.value));
        }
        if replace {
            let given: Vec<String> = writes.iter().map(|(f, _)| f.clone()).collect();
            for fid in self.tables[ti].writable_field_ids() {
                if !given.contains(&fid) {
                    writes.push((fid, None));
                }
            }
        }
        let mut touched = false;
        for (fid, value) in writes {
            let old = self.tables[ti].set_cell(rid, &fid, value.clone());
            if old != value {
                touched = true;
                changes.record_change(&table_id, rid, &fid, old.clone());
                self.sync_inverse(ti, rid, &fid, old.as_ref(), value.as_ref(), now, changes);
            }
        }
        if touched {
            if let Some(r) = self.tables[ti].records.get_mut(rid) {
                r.modified = whole_seconds(now);
            }
        }
    }

    /// Keeps the inverse link field on the other side in step with a link change.
    #[allow(clippy::too_many_arguments)]
    fn sync_inverse(
        &mut self,
        ti: usize,
        rid: &str,
        fid: &str,
        old: Option<&Value>,
        new: Option<&Value>,
        now: DateTime<Utc>,
        changes: &mut Changes,
    ) {
        let Some(field) = self.tables[ti].fields.iter().find(|f| f.id == fid) else { return };
        if field.class() != Class::Links {
            return;
        }
        let (Some(linked_id), Some(inverse)) = (
            field.linked_table_id().map(str::to_owned),
            field.options.get("inverseLinkFieldId").and_then(Value::as_str).map(str::to_owned),
        ) else {
            return;
        };
        let ids_of = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let (before, after) = (ids_of(old), ids_of(new));
        let Some(li) = self.tables.iter().position(|t| t.id == linked_id) else { return };
        if self.tables[li].field(&inverse).is_none() {
            return;
        }
        let linked_table_id = self.tables[li].id.clone();
        for target in before
            .iter()
            .filter(|t| !after.contains(t))
            .chain(after.iter().filter(|t| !before.contains(t)))
        {
            let adding = after.contains(target);
            let Some(rec) = self.tables[li].records.get(target) else { continue };
            let mut list = ids_of(rec.cells.get(&inverse));
            let prev = rec.cells.get(&inverse).cloned();
            if adding && !list.contains(&rid.to_owned()) {
                list.push(rid.to_owned());
            } else if !adding {
                list.retain(|x| x != rid);
            }
            let value = (!list.is_empty()).then(|| json!(list));
            if value != prev {
                self.tables[li].set_cell(target, &inverse, value);
                changes.record_change(&linked_table_id, target, &inverse, prev);
                if let Some(r) = self.tables[li].records.get_mut(target) {
                    r.modified = whole_seconds(now);
                }
            }
        }
    }

    fn add_planned_fields(&mut self, ti: usize, planned: Vec<Field>) {
        for f in planned {
            if self.tables[ti].field(&f.name).is_none() {
                self.tables[ti].fields.push(f);
            }
        }
    }

    /// Creates records (≤ 10), all or none.
    pub fn create(
        &mut self,
        ti: usize,
        inputs: &[RecordInput],
        typecast: bool,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, Changes), ApiError> {
        check_batch(inputs.len(), "created")?;
        let mut planned = Vec::new();
        let plans = inputs
            .iter()
            .map(|r| self.plan_fields(ti, &r.fields, typecast, &mut planned))
            .collect::<Result<Vec<_>, _>>()?;
        self.add_planned_fields(ti, planned);
        let mut changes = Changes::default();
        let mut ids_out = Vec::new();
        for plan in plans {
            let rid = self.new_record(ti, now, &mut changes);
            self.apply_fields(ti, &rid, plan, false, now, &mut changes);
            ids_out.push(rid);
        }
        Ok((ids_out, changes))
    }

    fn new_record(&mut self, ti: usize, now: DateTime<Utc>, changes: &mut Changes) -> String {
        let table = &mut self.tables[ti];
        let rid = ids::new_id("rec");
        let t = whole_seconds(now);
        table.insert_record(Record {
            id: rid.clone(),
            created: t,
            modified: t,
            auto_number: table.next_auto_number,
            cells: HashMap::new(),
        });
        table.next_auto_number += 1;
        let table_id = table.id.clone();
        changes.table(&table_id).created.push(rid.clone());
        rid
    }

    /// PATCH (merge) or PUT (replace) of records by id (≤ 10), all or none.
    pub fn update(
        &mut self,
        ti: usize,
        inputs: &[RecordInput],
        replace: bool,
        typecast: bool,
        now: DateTime<Utc>,
    ) -> Result<(Vec<String>, Changes), ApiError> {
        check_batch(inputs.len(), "updated")?;
        let mut planned = Vec::new();
        let mut plans = Vec::new();
        for r in inputs {
            let id =
                r.id.as_deref()
                    .ok_or_else(|| ApiError::invalid_records("Record is missing an id"))?;
            if !self.tables[ti].records.contains_key(id) {
                return Err(ApiError::row_does_not_exist(id));
            }
            plans.push((id.to_owned(), self.plan_fields(ti, &r.fields, typecast, &mut planned)?));
        }
        self.add_planned_fields(ti, planned);
        let mut changes = Changes::default();
        let mut out = Vec::new();
        for (id, plan) in plans {
            self.apply_fields(ti, &id, plan, replace, now, &mut changes);
            out.push(id);
        }
        Ok((out, changes))
    }

    /// performUpsert: records without id are matched on `merge_on` (1–3 fields); 0 matches
    /// create, 1 updates, more fail the whole request.
    pub fn upsert(
        &mut self,
        ti: usize,
        inputs: &[RecordInput],
        o: &UpsertOptions<'_>,
        now: DateTime<Utc>,
    ) -> Result<(UpsertOutcome, Changes), ApiError> {
        let UpsertOptions { merge_on, replace, typecast, multiple_match_error } = *o;
        check_batch(inputs.len(), "upserted")?;
        if merge_on.is_empty() || merge_on.len() > 3 {
            return Err(ApiError::invalid_request("fieldsToMergeOn must name 1 to 3 fields"));
        }
        let mut merge_ids = Vec::new();
        for name in merge_on {
            let f = self.tables[ti].field(name).ok_or_else(|| ApiError::unknown_field(name))?;
            if !field::mergeable(&f.kind) {
                return Err(ApiError::invalid_request(format!(
                    "Field \"{}\" cannot be used in fieldsToMergeOn",
                    f.name
                )));
            }
            merge_ids.push(f.id.clone());
        }
        let mut planned = Vec::new();
        // Resolve every record to update-by-id, update-by-match or create, in order; keys
        // created earlier in this request match later records, as sequential upserts would.
        enum Target {
            Existing(String),
            New(usize),
        }
        let mut pending_new: Vec<Vec<String>> = Vec::new();
        let mut steps = Vec::new();
        for r in inputs {
            let plan = self.plan_fields(ti, &r.fields, typecast, &mut planned)?;
            let target = if let Some(id) = &r.id {
                if !self.tables[ti].records.contains_key(id) {
                    return Err(ApiError::row_does_not_exist(id));
                }
                Target::Existing(id.clone())
            } else {
                let mut keys = Vec::new();
                for (name, fid) in merge_on.iter().zip(&merge_ids) {
                    let given =
                        plan.iter().find(|(f, _)| f == fid).and_then(|(_, c)| c.value.clone());
                    if given.is_none() {
                        return Err(ApiError::invalid_request(format!(
                            "Record is missing a value for merge field \"{name}\""
                        )));
                    }
                    keys.push(Table::merge_key(given.as_ref()));
                }
                let matches = self.tables[ti].find_by_merge(&merge_ids, &keys);
                match matches.len() {
                    0 => match pending_new.iter().position(|k| *k == keys) {
                        Some(i) => Target::New(i),
                        None => {
                            pending_new.push(keys);
                            Target::New(pending_new.len() - 1)
                        }
                    },
                    1 => Target::Existing(matches[0].clone()),
                    n => {
                        return Err(ApiError::unprocessable(
                            multiple_match_error,
                            format!("Cannot update more than one record with the same merge key; {n} records match"),
                        ))
                    }
                }
            };
            steps.push((target, plan));
        }
        self.add_planned_fields(ti, planned);
        let mut changes = Changes::default();
        let mut outcome = UpsertOutcome::default();
        let mut new_ids: Vec<Option<String>> = vec![None; pending_new.len()];
        for (target, plan) in steps {
            let (rid, created) = match target {
                Target::Existing(id) => (id, false),
                Target::New(i) => match &new_ids[i] {
                    Some(id) => (id.clone(), false),
                    None => {
                        let id = self.new_record(ti, now, &mut changes);
                        new_ids[i] = Some(id.clone());
                        (id, true)
                    }
                },
            };
            // A record created by this request is filled, never cleared, by PUT.
            self.apply_fields(ti, &rid, plan, replace && !created, now, &mut changes);
            if created {
                outcome.created.push(rid.clone());
            } else if !outcome.updated.contains(&rid) && !outcome.created.contains(&rid) {
                outcome.updated.push(rid.clone());
            }
            outcome.records.push(rid);
        }
        Ok((outcome, changes))
    }

    /// Deletes records by id (≤ 10), all or none; links to them are removed everywhere.
    pub fn delete(
        &mut self,
        ti: usize,
        record_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<Changes, ApiError> {
        check_batch(record_ids.len(), "deleted")?;
        for id in record_ids {
            if !self.tables[ti].records.contains_key(id) {
                return Err(ApiError::row_does_not_exist(id));
            }
        }
        let mut changes = Changes::default();
        let table_id = self.tables[ti].id.clone();
        for id in record_ids {
            if self.tables[ti].remove_record(id).is_some() {
                changes.table(&table_id).destroyed.push(id.clone());
            }
        }
        // Links pointing at the deleted records disappear, as in Airtable.
        for li in 0..self.tables.len() {
            let link_fields: Vec<String> = self.tables[li]
                .fields
                .iter()
                .filter(|f| {
                    f.class() == Class::Links && f.linked_table_id().is_none_or(|t| t == table_id)
                })
                .map(|f| f.id.clone())
                .collect();
            for fid in link_fields {
                let hits: Vec<(String, Vec<Value>)> = self.tables[li]
                    .records
                    .values()
                    .filter_map(|r| {
                        let list = r.cells.get(&fid)?.as_array()?;
                        list.iter()
                            .any(|v| v.as_str().is_some_and(|s| record_ids.iter().any(|d| d == s)))
                            .then(|| (r.id.clone(), list.clone()))
                    })
                    .collect();
                let other_id = self.tables[li].id.clone();
                for (rid, list) in hits {
                    let kept: Vec<Value> = list
                        .iter()
                        .filter(|v| !v.as_str().is_some_and(|s| record_ids.iter().any(|d| d == s)))
                        .cloned()
                        .collect();
                    let prev = self.tables[li].set_cell(
                        &rid,
                        &fid,
                        (!kept.is_empty()).then(|| json!(kept)),
                    );
                    changes.record_change(&other_id, &rid, &fid, prev);
                    if let Some(r) = self.tables[li].records.get_mut(&rid) {
                        r.modified = whole_seconds(now);
                    }
                }
            }
        }
        Ok(changes)
    }

    /// Renders records of table `ti` for a write response.
    pub fn render_all(&self, ti: usize, record_ids: &[String], by_id: bool) -> Vec<Value> {
        let table = &self.tables[ti];
        record_ids
            .iter()
            .filter_map(|id| table.records.get(id))
            .map(|r| table.render(r, by_id, None))
            .collect()
    }

    /// Commits a transaction's changes into every matching webhook's payload log and
    /// returns the webhooks that should be pinged.
    pub fn publish(
        &mut self,
        changes: &Changes,
        source: &str,
        now: DateTime<Utc>,
        split: Option<usize>,
    ) -> Vec<String> {
        if changes.is_empty() {
            return Vec::new();
        }
        let txn = self.take_transaction();
        let mut ping = Vec::new();
        let mut hooks = std::mem::take(&mut self.webhooks);
        for hook in &mut hooks {
            if hook.record_changes(self, changes, source, txn, now, split) {
                ping.push(hook.id.clone());
            }
        }
        self.webhooks = hooks;
        ping
    }
}

fn check_batch(n: usize, verb: &str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::invalid_records("Could not find field \"records\" or it is empty"));
    }
    if n > 10 {
        return Err(ApiError::invalid_records(format!(
            "A maximum of 10 records can be {verb} per request but you have provided {n}."
        )));
    }
    Ok(())
}
