//! `cdc airtable check [--apply]`: the base compared with the mapping, by table and field,
//! each finding with its fix. `--apply` creates what is missing (tables, fields such as the
//! merge field) through the Meta API; it never deletes, renames or retypes anything.
//!
//! The ids the base had at the last check are kept (`sync_checkpoint` `airtable.binding`), so
//! a table or field an admin renamed is reported as a rename (same id, new name), not as
//! missing.

use crate::airtable::{meta::BaseMeta, AirtableClient, AirtableError, Lane};
use crate::postgres::checkpoint;
use reqwest::Method;
use schema::mapping::{FieldKind, FieldMapping, MappedTable, Mapping};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashSet};

const BINDING: &str = "airtable.binding";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    /// Missing; `--apply` creates it.
    Missing,
    /// The daemon cannot run until someone fixes it by hand (or in the mapping).
    Fail,
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

/// The ids each mapped name had at the last good check: table name -> (id, field -> id).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Binding(BTreeMap<String, (String, BTreeMap<String, String>)>);

pub struct Report {
    pub findings: Vec<Finding>,
    creations: Vec<Creation>,
}

impl Report {
    /// The daemon could not run against the base as it is.
    pub fn fails(&self) -> bool {
        self.findings.iter().any(|f| f.level != Level::Ok)
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

/// Compares the base with the mapping.
fn compare(mapping: &Mapping, meta: &BaseMeta, binding: &Binding) -> Report {
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
        let bound = binding.0.get(&t.airtable);
        let at = match meta.table(&t.airtable) {
            Some(at) => at,
            None => match bound.and_then(|(id, _)| meta.table(id)) {
                Some(renamed) => {
                    push(
                        Level::Fail,
                        &t.airtable,
                        None,
                        format!(
                            "table {} was renamed to {:?} in Airtable",
                            renamed.id, renamed.name
                        ),
                        Some(format!(
                            "set airtable = {:?} for {} in the mapping (or rename it back)",
                            renamed.name, t.table.name
                        )),
                    );
                    continue;
                }
                None => {
                    push(
                        Level::Missing,
                        &t.airtable,
                        None,
                        format!("no table {:?} (mapped from {})", t.airtable, t.table.name),
                        Some("`cdc airtable check --apply` creates it".into()),
                    );
                    creations.push(Creation::Table { mapped: mi });
                    continue;
                }
            },
        };
        let was = |name: &str| {
            bound
                .and_then(|(_, f)| f.get(name))
                .and_then(|id| at.fields.iter().find(|f| &f.id == id))
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
                match was(name) {
                    Some(renamed) => push(
                        Level::Fail,
                        &t.airtable,
                        Some(name),
                        format!(
                            "field {} was renamed to {:?} in Airtable",
                            renamed.id, renamed.name
                        ),
                        Some(format!(
                            "set field = {:?} in the mapping (or rename it back)",
                            renamed.name
                        )),
                    ),
                    None => {
                        push(
                            Level::Missing,
                            &t.airtable,
                            Some(name),
                            format!("no field {name:?} ({})", def.kind.as_str()),
                            Some("`cdc airtable check --apply` creates it".into()),
                        );
                        creations.push(Creation::Field { mapped: mi, def: def.clone() });
                    }
                }
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
    /// Reads the base and compares it; a base that fits has its ids remembered.
    pub async fn check(&self) -> Result<Report, CheckError> {
        let meta = BaseMeta::from_json(&self.client.tables(Lane::Bulk).await?);
        let binding: Binding = checkpoint::read(self.pool, BINDING)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let report = compare(self.mapping, &meta, &binding);
        self.remember(&meta, binding).await?;
        Ok(report)
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
        let meta = BaseMeta::from_json(&self.client.tables(Lane::Bulk).await?);
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

    /// Keeps the ids of every mapped name the base has now (renames are found against them).
    async fn remember(&self, meta: &BaseMeta, mut binding: Binding) -> sqlx::Result<()> {
        for t in &self.mapping.tables {
            let Some(at) = meta.table(&t.airtable) else { continue };
            let entry = binding
                .0
                .entry(t.airtable.clone())
                .or_insert_with(|| (at.id.clone(), BTreeMap::new()));
            entry.0 = at.id.clone();
            for def in fields_of(t) {
                if let Some(f) = at.field(&def.field) {
                    entry.1.insert(def.field.clone(), f.id.clone());
                }
            }
        }
        checkpoint::write(self.pool, BINDING, &json!(binding)).await
    }
}
