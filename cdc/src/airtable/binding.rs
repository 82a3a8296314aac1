//! Names to ids. The mapping names Airtable tables and fields; the wire carries their ids,
//! which an admin's rename never changes. At start the daemon resolves every mapped name
//! (by the id it had last time, else by name) and keeps the ids (`sync_checkpoint`
//! `airtable.binding`), so after a rename:
//! - requests use table ids in paths, field ids in `fields[]`, in written cells and in
//!   `fieldsToMergeOn`, and `returnFieldsByFieldId`; responses come back under the
//!   mapping's names, so nothing past the client knows;
//! - formulas, which only take names, get each field's current name;
//! - the Meta API's answer is read [`BaseMeta::as_mapped`]: the mapping's names on the
//!   same ids, so validation and webhook specifications hold.

use crate::{
    airtable::{meta::BaseMeta, AirtableClient},
    postgres::checkpoint,
};
use schema::mapping::Mapping;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

/// Where the ids are kept.
pub const CHECKPOINT: &str = "airtable.binding";

/// The ids each mapped name had when last seen: table name -> (table id, field -> id).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KnownIds(pub BTreeMap<String, (String, BTreeMap<String, String>)>);

impl KnownIds {
    pub async fn load(pool: &PgPool) -> sqlx::Result<Self> {
        Ok(checkpoint::read(pool, CHECKPOINT)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default())
    }

    pub async fn save(&self, pool: &PgPool) -> sqlx::Result<()> {
        checkpoint::write(pool, CHECKPOINT, &serde_json::json!(self)).await
    }

    /// These ids, with what `wire` resolved added (a name seen for the first time).
    pub fn learn(&mut self, wire: &Wire) {
        for (name, t) in &wire.tables {
            let entry =
                self.0.entry(name.clone()).or_insert_with(|| (t.id.clone(), BTreeMap::new()));
            entry.0 = t.id.clone();
            for (field, (id, _)) in &t.fields {
                entry.1.insert(field.clone(), id.clone());
            }
        }
    }
}

/// One mapped table as the base has it now.
#[derive(Debug, Clone, Default)]
pub struct WireTable {
    pub id: String,
    /// Its name in Airtable now (the mapping's, unless renamed).
    pub name: String,
    /// mapping field name -> (field id, its name in Airtable now)
    fields: HashMap<String, (String, String)>,
    /// field id -> mapping field name
    names: HashMap<String, String>,
}

impl WireTable {
    pub fn field_id<'a>(&'a self, name: &'a str) -> &'a str {
        self.fields.get(name).map_or(name, |(id, _)| id)
    }

    /// The field's name in Airtable now.
    pub fn current_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.fields.get(name).map_or(name, |(_, current)| current)
    }

    /// Cells keyed by the mapping's names, keyed by field ids.
    pub fn outgoing(&self, cells: &Map<String, Value>) -> Map<String, Value> {
        cells.iter().map(|(k, v)| (self.field_id(k).to_owned(), v.clone())).collect()
    }

    /// Cells keyed by field ids, keyed by the mapping's names (unmapped ones as they came).
    pub fn incoming(&self, cells: Map<String, Value>) -> Map<String, Value> {
        cells.into_iter().map(|(k, v)| (self.names.get(&k).cloned().unwrap_or(k), v)).collect()
    }

    /// `formula` with each `{field}` outside string literals named as Airtable names it now.
    pub fn formula(&self, formula: &str) -> String {
        let mut out = String::with_capacity(formula.len());
        let mut chars = formula.chars();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (Some(_), '\\') => {
                    out.push(c);
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                (Some(q), c) if c == q => {
                    quote = None;
                    out.push(c);
                }
                (None, '\'' | '"') => {
                    quote = Some(c);
                    out.push(c);
                }
                (None, '{') => {
                    let name: String = chars.by_ref().take_while(|&ch| ch != '}').collect();
                    out.push('{');
                    out.push_str(self.current_name(&name));
                    out.push('}');
                }
                _ => out.push(c),
            }
        }
        out
    }
}

/// Binds `client` to the ids of `meta` (the Meta API's answer): by the ids kept from before,
/// else by name; keeps them for the next start. Returns `meta` under the mapping's names.
pub async fn bind(
    client: &AirtableClient,
    meta: &BaseMeta,
    mapping: &Mapping,
    pool: &PgPool,
) -> sqlx::Result<BaseMeta> {
    let mut known = KnownIds::load(pool).await?;
    let wire = Wire::resolve(meta, mapping, &known);
    let before = known.clone();
    known.learn(&wire);
    if known != before {
        known.save(pool).await?;
    }
    for (was, now) in wire.renames() {
        tracing::warn!(mapped = %was, airtable = %now, "renamed in Airtable; the sync goes on by id");
    }
    let mapped = meta.as_mapped(&wire);
    client.bind(wire);
    Ok(mapped)
}

/// Every mapped table as the base has it now, by the mapping's Airtable table name.
#[derive(Debug, Clone, Default)]
pub struct Wire {
    tables: HashMap<String, WireTable>,
}

impl Wire {
    /// Each mapped table and field of `mapping` in `meta`: by its known id when the base
    /// still has that id, else by name. What the base lacks stays unresolved (by name).
    pub fn resolve(meta: &BaseMeta, mapping: &Mapping, known: &KnownIds) -> Self {
        let mut tables = HashMap::new();
        for t in &mapping.tables {
            let was = known.0.get(&t.airtable);
            let at = was
                .and_then(|(id, _)| meta.tables.iter().find(|m| &m.id == id))
                .or_else(|| meta.table(&t.airtable));
            let Some(at) = at else { continue };
            let mut wt =
                WireTable { id: at.id.clone(), name: at.name.clone(), ..WireTable::default() };
            let names = t
                .columns
                .iter()
                .map(|c| c.field.field.as_str())
                .chain(t.derived.iter().map(|(_, f)| f.field.as_str()))
                .chain([mapping.merge_field.as_str()]);
            for name in names {
                let f = was
                    .and_then(|(_, f)| f.get(name))
                    .and_then(|id| at.fields.iter().find(|f| &f.id == id))
                    .or_else(|| at.field(name));
                if let Some(f) = f {
                    wt.fields.insert(name.to_owned(), (f.id.clone(), f.name.clone()));
                    wt.names.insert(f.id.clone(), name.to_owned());
                }
            }
            tables.insert(t.airtable.clone(), wt);
        }
        Self { tables }
    }

    pub fn table(&self, name: &str) -> Option<&WireTable> {
        self.tables.get(name)
    }

    /// The same ids under Airtable's names in `meta` now (what `meta` lacks stays as it was).
    pub fn refresh(&self, meta: &BaseMeta) -> Wire {
        let mut out = self.clone();
        for t in out.tables.values_mut() {
            let Some(at) = meta.tables.iter().find(|m| m.id == t.id) else { continue };
            t.name = at.name.clone();
            for (id, current) in t.fields.values_mut() {
                if let Some(f) = at.fields.iter().find(|f| f.id == *id) {
                    *current = f.name.clone();
                }
            }
        }
        out
    }

    /// The ids this binding holds, to resolve `meta` again (after a rename since).
    pub fn ids(&self) -> KnownIds {
        let mut k = KnownIds::default();
        k.learn(self);
        k
    }

    /// Renames since the ids were bound: (mapping name, Airtable's name now), tables first.
    pub fn renames(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, t) in &self.tables {
            if *name != t.name {
                out.push((name.clone(), t.name.clone()));
            }
            for (field, (_, current)) in &t.fields {
                if field != current {
                    out.push((format!("{name}.{field}"), format!("{}.{current}", t.name)));
                }
            }
        }
        out.sort();
        out
    }
}

impl BaseMeta {
    /// This schema under the mapping's names: each table and field `wire` bound is named as
    /// the mapping names it (same ids), so name-based checks hold across a rename.
    pub fn as_mapped(&self, wire: &Wire) -> BaseMeta {
        let mut out = self.clone();
        for (name, wt) in &wire.tables {
            let Some(t) = out.tables.iter_mut().find(|t| t.id == wt.id) else { continue };
            t.name = name.clone();
            for f in &mut t.fields {
                if let Some(mapped) = wt.names.get(&f.id) {
                    f.name = mapped.clone();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> WireTable {
        let mut t = WireTable { id: "tbl1".into(), name: "Programs".into(), ..Default::default() };
        t.fields.insert("pg_id".into(), ("fld1".into(), "pg_id".into()));
        t.fields.insert("Motivation".into(), ("fld2".into(), "Why".into()));
        t.names.insert("fld1".into(), "pg_id".into());
        t.names.insert("fld2".into(), "Motivation".into());
        t
    }

    #[test]
    fn formulas_take_current_names_outside_string_literals() {
        let t = table();
        assert_eq!(
            t.formula("AND({Motivation}='{Motivation}', {pg_id}=\"a\\\"{Motivation}\")"),
            "AND({Why}='{Motivation}', {pg_id}=\"a\\\"{Motivation}\")"
        );
        assert_eq!(t.formula("LAST_MODIFIED_TIME()"), "LAST_MODIFIED_TIME()");
    }

    #[test]
    fn cells_go_out_by_id_and_come_back_by_mapping_name() {
        let t = table();
        let mut cells = Map::new();
        cells.insert("Motivation".into(), Value::from("x"));
        let out = t.outgoing(&cells);
        assert_eq!(out.keys().collect::<Vec<_>>(), ["fld2"]);
        let mut back = out.clone();
        back.insert("fldOther".into(), Value::from(1));
        let back = t.incoming(back);
        assert_eq!(back["Motivation"], "x");
        assert_eq!(back["fldOther"], 1);
    }
}
