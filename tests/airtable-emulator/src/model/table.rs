//! Tables, records, and how a record is rendered for the records API (V1) and for webhook
//! payloads (V2).

use super::field::{class_of, is_empty, Class, Field};
use crate::clock::iso;
use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub created: DateTime<Utc>,
    /// Last edit of a non-computed field (whole seconds, as LAST_MODIFIED_TIME()).
    pub modified: DateTime<Utc>,
    pub auto_number: u64,
    /// Stored V1 values by field id; empty values are never stored.
    pub cells: HashMap<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub primary_field_id: String,
    pub fields: Vec<Field>,
    pub views: Vec<(String, String)>,
    pub records: IndexMap<String, Record>,
    pub next_auto_number: u64,
    /// Fields created on first use (no schema file): unknown names create fields.
    pub inferred: bool,
    /// value key -> record ids, per field used to merge on; built on first use.
    merge_index: HashMap<String, HashMap<String, Vec<String>>>,
}

/// The actor Airtable reports for createdBy/lastModifiedBy and in payload metadata.
pub const EMULATOR_USER: &str = "usrEMULATOR00001";

impl Table {
    pub fn new(id: String, name: String, fields: Vec<Field>, inferred: bool) -> Self {
        let primary_field_id = fields.first().map(|f| f.id.clone()).unwrap_or_default();
        Self {
            views: vec![(crate::ids::new_id("viw"), "Grid view".into())],
            id,
            name,
            description: None,
            primary_field_id,
            fields,
            records: IndexMap::new(),
            next_auto_number: 1,
            inferred,
            merge_index: HashMap::new(),
        }
    }

    /// A field by id or name (names are exact, as in Airtable).
    pub fn field(&self, id_or_name: &str) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.id == id_or_name)
            .or_else(|| self.fields.iter().find(|f| f.name == id_or_name))
    }

    pub fn field_mut(&mut self, id: &str) -> Option<&mut Field> {
        self.fields.iter_mut().find(|f| f.id == id)
    }

    pub fn primary_field(&self) -> Option<&Field> {
        self.fields.iter().find(|f| f.id == self.primary_field_id)
    }

    pub fn view_exists(&self, id_or_name: &str) -> bool {
        self.views.iter().any(|(id, name)| id == id_or_name || name == id_or_name)
    }

    /// The primary field's value as text (link names in V2 payloads).
    pub fn primary_text(&self, record: &Record) -> String {
        match record.cells.get(&self.primary_field_id) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    }

    /// A cell as the records API returns it, computed fields included; `None` when empty.
    pub fn read_cell(&self, record: &Record, field: &Field) -> Option<Value> {
        let v = match field.kind.as_str() {
            "autoNumber" => json!(record.auto_number),
            "createdTime" => json!(iso(record.created)),
            "lastModifiedTime" => json!(iso(record.modified)),
            "createdBy" | "lastModifiedBy" => {
                json!({ "id": EMULATOR_USER, "email": "emulator@example.com", "name": "Emulator" })
            }
            "count" => {
                let link = field.options.get("recordLinkFieldId").and_then(Value::as_str)?;
                let n = record.cells.get(link).and_then(Value::as_array).map_or(0, Vec::len);
                json!(n)
            }
            "formula" => {
                let text = field.options.get("formula").and_then(Value::as_str)?;
                match crate::formula::evaluate_text(text, self, record) {
                    Ok(v) => v,
                    Err(_) => json!({ "error": "#ERROR!" }),
                }
            }
            _ => record.cells.get(&field.id)?.clone(),
        };
        (!is_empty(&v)).then_some(v)
    }

    /// The V1 record object, with `fields` keyed by name or id, limited to `only` if given.
    pub fn render(&self, record: &Record, by_id: bool, only: Option<&[String]>) -> Value {
        let mut fields = Map::new();
        for f in &self.fields {
            if let Some(only) = only {
                if !only.iter().any(|o| o == &f.id || o == &f.name) {
                    continue;
                }
            }
            if let Some(v) = self.read_cell(record, f) {
                fields.insert(if by_id { f.id.clone() } else { f.name.clone() }, v);
            }
        }
        json!({ "id": record.id, "createdTime": iso(record.created), "fields": fields })
    }

    /// A cell in the V2 (webhook) format: selects as {id,name,color}, links as {id,name}.
    pub fn v2_cell(&self, field: &Field, value: Option<&Value>, linked: Option<&Table>) -> Value {
        let Some(value) = value else { return Value::Null };
        let choice = |name: &str| {
            field
                .choices()
                .into_iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                .cloned()
                .unwrap_or_else(|| json!({ "name": name }))
        };
        match class_of(&field.kind) {
            Class::SingleSelect => value.as_str().map(choice).unwrap_or(Value::Null),
            Class::MultiSelect => Value::Array(
                value
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).map(choice).collect())
                    .unwrap_or_default(),
            ),
            Class::Links => Value::Array(
                value
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(|id| {
                                let name = linked
                                    .and_then(|t| t.records.get(id).map(|r| t.primary_text(r)))
                                    .unwrap_or_default();
                                json!({ "id": id, "name": name })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => value.clone(),
        }
    }

    // --- merge index (performUpsert) ---

    /// The key a value is matched on: exact equality of its JSON text.
    pub fn merge_key(value: Option<&Value>) -> String {
        value.map(Value::to_string).unwrap_or_default()
    }

    /// Record ids whose merge fields equal `keys` (field id -> key).
    pub fn find_by_merge(&mut self, fields: &[String], keys: &[String]) -> Vec<String> {
        for f in fields {
            self.ensure_index(f);
        }
        let first = self
            .merge_index
            .get(&fields[0])
            .and_then(|m| m.get(&keys[0]))
            .cloned()
            .unwrap_or_default();
        first
            .into_iter()
            .filter(|rid| {
                self.records.get(rid).is_some_and(|r| {
                    fields.iter().zip(keys).all(|(f, k)| Self::merge_key(r.cells.get(f)) == *k)
                })
            })
            .collect()
    }

    fn ensure_index(&mut self, field_id: &str) {
        if self.merge_index.contains_key(field_id) {
            return;
        }
        let mut index: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.records.values() {
            index.entry(Self::merge_key(r.cells.get(field_id))).or_default().push(r.id.clone());
        }
        self.merge_index.insert(field_id.to_owned(), index);
    }

    /// Keeps merge indexes in step with a cell change.
    fn reindex(
        &mut self,
        record_id: &str,
        field_id: &str,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        if let Some(index) = self.merge_index.get_mut(field_id) {
            let old_key = Self::merge_key(old);
            if let Some(ids) = index.get_mut(&old_key) {
                ids.retain(|id| id != record_id);
                if ids.is_empty() {
                    index.remove(&old_key);
                }
            }
            index.entry(Self::merge_key(new)).or_default().push(record_id.to_owned());
        }
    }

    /// Sets (or clears, with None) one stored cell; returns the previous value.
    pub fn set_cell(
        &mut self,
        record_id: &str,
        field_id: &str,
        value: Option<Value>,
    ) -> Option<Value> {
        let record = self.records.get_mut(record_id)?;
        let old = match &value {
            Some(v) => record.cells.insert(field_id.to_owned(), v.clone()),
            None => record.cells.remove(field_id),
        };
        if old != value {
            self.reindex(record_id, field_id, old.as_ref(), value.as_ref());
        }
        old
    }

    pub fn insert_record(&mut self, record: Record) {
        for (field, index) in self.merge_index.iter_mut() {
            index
                .entry(Self::merge_key(record.cells.get(field)))
                .or_default()
                .push(record.id.clone());
        }
        self.records.insert(record.id.clone(), record);
    }

    pub fn remove_record(&mut self, record_id: &str) -> Option<Record> {
        let record = self.records.swap_remove(record_id)?;
        for (field, index) in self.merge_index.iter_mut() {
            let key = Self::merge_key(record.cells.get(field));
            if let Some(ids) = index.get_mut(&key) {
                ids.retain(|id| id != record_id);
                if ids.is_empty() {
                    index.remove(&key);
                }
            }
        }
        Some(record)
    }

    /// Field ids of writable (non-computed) fields.
    pub fn writable_field_ids(&self) -> HashSet<String> {
        self.fields.iter().filter(|f| !f.is_computed()).map(|f| f.id.clone()).collect()
    }

    pub fn meta(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name));
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert("primaryFieldId".into(), json!(self.primary_field_id));
        m.insert("fields".into(), Value::Array(self.fields.iter().map(Field::meta).collect()));
        m.insert(
            "views".into(),
            Value::Array(
                self.views
                    .iter()
                    .map(|(id, name)| json!({ "id": id, "name": name, "type": "grid" }))
                    .collect(),
            ),
        );
        Value::Object(m)
    }
}
