//! `cdc airtable check [--apply]`: the base compared with the mapping, by table and field,
//! each finding with its fix. `--apply` creates what is missing (tables, fields such as the
//! merge field) through the Meta API; it never deletes, renames or retypes anything.
//!
//! The base is read through the ids bound before ([`crate::airtable::binding`]), so a table
//! or field an admin renamed is reported as a rename (same id, new name), and passes: the
//! sync puts ids on the wire and goes on.

use crate::airtable::{
    binding::{KnownIds, Wire},
    meta::BaseMeta,
    AirtableClient, AirtableError, Lane,
};
use reqwest::Method;
use schema::mapping::{FieldKind, FieldMapping, MappedTable, Mapping};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    /// Renamed in Airtable since it was bound: the sync goes on by id.
    Renamed,
    /// Missing; `--apply` creates it.
    Missing,
    /// The daemon cannot run until someone fixes it by hand (or in the mapping).
    Fail,
}

impl Level {
    /// The daemon could not run against the base while a finding has this level.
    pub fn blocks(self) -> bool {
        matches!(self, Level::Missing | Level::Fail)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    /// The Airtable table (as the mapping names it).
    pub table: String,
    pub field: Option<String>,
    pub detail: String,
    pub fix: Option<String>,
}

/// What `--apply` would create.
#[derive(Debug, Clone)]
enum Creation {
    Table { mapped: usize },
    Field { mapped: usize, def: FieldMapping },
}

pub struct Report {
    pub findings: Vec<Finding>,
    creations: Vec<Creation>,
}

impl Report {
    /// The daemon could not run against the base as it is.
    pub fn fails(&self) -> bool {
        self.findings.iter().any(|f| f.level.blocks())
    }
}

/// Whether a field of Airtable type `kind` holds what the mapping's `want` means.
fn compatible(want: &FieldKind, kind: &str) -> bool {
    want.as_str() == kind
        || matches!((want, kind), (FieldKind::MultilineText, "richText"))
        || matches!(
            (want, kind),
            (FieldKind::Number, "currency" | "percent" | "rating" | "duration")
        )
}

fn fields_of(t: &MappedTable) -> impl Iterator<Item = &FieldMapping> {
    t.columns.iter().map(|c| &c.field).chain(t.derived.iter().map(|(_, f)| f))
}

/// Compares the base (under the mapping's names, see [`BaseMeta::as_mapped`]) with the
/// mapping.
fn compare(mapping: &Mapping, meta: &BaseMeta) -> Report {
    let mut findings = Vec::new();
    let mut creations = Vec::new();
    let mut push =
        |level, table: &str, field: Option<&str>, detail: String, fix: Option<String>| {
            findings.push(Finding {
                level,
                table: table.to_owned(),
                field: field.map(str::to_owned),
                detail,
                fix,
            })
        };
    for (mi, t) in mapping.tables.iter().enumerate() {
        let Some(at) = meta.table(&t.airtable) else {
            push(
                Level::Missing,
                &t.airtable,
                None,
                format!("no table {:?} (mapped from {})", t.airtable, t.table.name),
                Some("`cdc airtable check --apply` creates it".into()),
            );
            creations.push(Creation::Table { mapped: mi });
            continue;
        };
        match at.field(&mapping.merge_field) {
            Some(f) if matches!(f.kind.as_str(), "singleLineText" | "multilineText" | "number") => {
                push(
                    Level::Ok,
                    &t.airtable,
                    Some(&mapping.merge_field),
                    format!("merge field ({})", f.id),
                    None,
                )
            }
            Some(f) => push(
                Level::Fail,
                &t.airtable,
                Some(&mapping.merge_field),
                format!("type {} cannot be merged on", f.kind),
                Some(format!("make {:?} a singleLineText field", mapping.merge_field)),
            ),
            None => {
                push(
                    Level::Missing,
                    &t.airtable,
                    Some(&mapping.merge_field),
                    "no merge field: upserts need it".into(),
                    Some("`cdc airtable check --apply` creates it (singleLineText)".into()),
                );
                creations.push(Creation::Field {
                    mapped: mi,
                    def: FieldMapping {
                        field: mapping.merge_field.clone(),
                        kind: FieldKind::SingleLineText,
                        link: None,
                        choices: vec![],
                    },
                });
            }
        }
        for def in fields_of(t) {
            let name = def.field.as_str();
            let Some(f) = at.field(name) else {
                push(
                    Level::Missing,
                    &t.airtable,
                    Some(name),
                    format!("no field {name:?} ({})", def.kind.as_str()),
                    Some("`cdc airtable check --apply` creates it".into()),
                );
                creations.push(Creation::Field { mapped: mi, def: def.clone() });
                continue;
            };
            if !compatible(&def.kind, &f.kind) {
                push(
                    Level::Fail,
                    &t.airtable,
                    Some(name),
                    format!("type {} but the mapping says {}", f.kind, def.kind.as_str()),
                    Some(format!(
                        "change the field's type to {} in Airtable, or map another field",
                        def.kind.as_str()
                    )),
                );
                continue;
            }
            if let Some(target) = def.link.as_ref().and_then(|l| mapping.table(l)) {
                let linked = f.options.get("linkedTableId").and_then(Value::as_str);
                let want = meta.table(&target.airtable).map(|x| x.id.as_str());
                if want.is_some() && linked != want {
                    push(
                        Level::Fail,
                        &t.airtable,
                        Some(name),
                        format!(
                            "links to {} instead of {:?}",
                            linked.unwrap_or("-"),
                            target.airtable
                        ),
                        Some(format!("link the field to {:?}", target.airtable)),
                    );
                    continue;
                }
            }
            let choices: HashSet<&str> = f
                .options
                .get("choices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let lacking: Vec<&str> =
                def.choices.iter().map(String::as_str).filter(|c| !choices.contains(c)).collect();
            if !lacking.is_empty() {
                push(
                    Level::Fail,
                    &t.airtable,
                    Some(name),
                    format!("select options {lacking:?} are missing"),
                    Some(format!("add the options {lacking:?} to the field in Airtable")),
                );
                continue;
            }
            push(Level::Ok, &t.airtable, Some(name), format!("{} ({})", f.kind, f.id), None);
        }
    }
    Report { findings, creations }
}

/// The Meta API's options for a new field of this kind (the minimum each type needs).
fn field_body(def: &FieldMapping, linked_table_id: Option<&str>) -> Value {
    let mut body = json!({ "name": def.field, "type": def.kind.as_str() });
    let options = match def.kind {
        FieldKind::Number => Some(json!({ "precision": 8 })),
        FieldKind::Checkbox => Some(json!({ "icon": "check", "color": "greenBright" })),
        FieldKind::Date => Some(json!({ "dateFormat": { "name": "iso" } })),
        FieldKind::DateTime => Some(
            json!({ "dateFormat": { "name": "iso" }, "timeFormat": { "name": "24hour" }, "timeZone": "utc" }),
        ),
        FieldKind::SingleSelect | FieldKind::MultipleSelects => Some(
            json!({ "choices": def.choices.iter().map(|c| json!({ "name": c })).collect::<Vec<_>>() }),
        ),
        FieldKind::MultipleRecordLinks => Some(json!({ "linkedTableId": linked_table_id })),
        _ => None,
    };
    if let Some(o) = options {
        body["options"] = o;
    }
    body
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("Airtable: {0}")]
    Airtable(#[from] AirtableError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the token lacks the scope schema.bases:write, which `--apply` needs: add it to the token (or create by hand what the check lists)")]
    NoSchemaWrite,
}

pub struct Checker<'a> {
    pub client: &'a AirtableClient,
    pub mapping: &'a Mapping,
    pub pool: &'a PgPool,
}

impl Checker<'_> {
    /// Reads the base through the bound ids and compares it; the ids of what it has are
    /// remembered.
    pub async fn check(&self) -> Result<Report, CheckError> {
        let (meta, wire) = self.read().await?;
        let mut report = compare(self.mapping, &meta);
        for (was, now) in wire.renames() {
            let (table, field) = match was.split_once('.') {
                Some((t, f)) => (t.to_owned(), Some(f.to_owned())),
                None => (was.clone(), None),
            };
            let new_name = match &field {
                Some(_) => now.split_once('.').map_or(now.as_str(), |(_, f)| f),
                None => now.as_str(),
            };
            report.findings.push(Finding {
                level: Level::Renamed,
                table,
                field,
                detail: format!(
                    "was renamed to {new_name:?} in Airtable (same id): the sync goes on by id"
                ),
                fix: Some(format!("none needed; to match, name it {new_name:?} in the mapping")),
            });
        }
        Ok(report)
    }

    /// The base under the mapping's names, and the binding it was read through (saved).
    async fn read(&self) -> Result<(BaseMeta, Wire), CheckError> {
        let meta = BaseMeta::from_json(&self.client.tables(Lane::Bulk).await?);
        let mut known = KnownIds::load(self.pool).await?;
        let wire = Wire::resolve(&meta, self.mapping, &known);
        known.learn(&wire);
        known.save(self.pool).await?;
        Ok((meta.as_mapped(&wire), wire))
    }

    /// Creates what the report found missing: tables first (the merge field as primary),
    /// then fields, links last so their tables exist. Returns what it created.
    pub async fn apply(&self, report: &Report) -> Result<Vec<String>, CheckError> {
        if report.creations.is_empty() {
            return Ok(Vec::new());
        }
        let who =
            self.client.send(Lane::Bulk, "meta", Method::GET, "meta/whoami", &[], None).await?;
        if let Some(scopes) = who["scopes"].as_array() {
            if !scopes.iter().any(|s| s == "schema.bases:write") {
                return Err(CheckError::NoSchemaWrite);
            }
        }
        let base = self.client.config().base_id.clone();
        let mut done = Vec::new();
        let mut fields: Vec<(usize, FieldMapping)> = Vec::new();
        for c in &report.creations {
            match c {
                Creation::Table { mapped } => {
                    let t = &self.mapping.tables[*mapped];
                    let primary =
                        json!({ "name": self.mapping.merge_field, "type": "singleLineText" });
                    let body = json!({ "name": t.airtable, "fields": [primary] });
                    self.write(Method::POST, &format!("meta/bases/{base}/tables"), &body).await?;
                    done.push(format!(
                        "table {:?} (with {:?})",
                        t.airtable, self.mapping.merge_field
                    ));
                    fields.extend(fields_of(t).map(|f| (*mapped, f.clone())));
                }
                Creation::Field { mapped, def } => fields.push((*mapped, def.clone())),
            }
        }
        fields.sort_by_key(|(_, f)| f.link.is_some());
        let (meta, _) = self.read().await?;
        for (mi, def) in fields {
            let t = &self.mapping.tables[mi];
            let Some(at) = meta.table(&t.airtable) else { continue };
            let linked = def
                .link
                .as_ref()
                .and_then(|l| self.mapping.table(l))
                .and_then(|l| meta.table(&l.airtable))
                .map(|x| x.id.as_str());
            let path = format!("meta/bases/{base}/tables/{}/fields", at.id);
            self.write(Method::POST, &path, &field_body(&def, linked)).await?;
            done.push(format!("field {:?}.{:?} ({})", t.airtable, def.field, def.kind.as_str()));
        }
        Ok(done)
    }

    async fn write(&self, method: Method, path: &str, body: &Value) -> Result<Value, CheckError> {
        match self.client.send(Lane::Bulk, "schema", method, path, &[], Some(body)).await {
            Err(e) if e.is_auth() => Err(CheckError::NoSchemaWrite),
            other => Ok(other?),
        }
    }
}
