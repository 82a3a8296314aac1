//! `cdc verify`: Postgres against Airtable, for every mapped table.
//!
//! - **Counts and membership.** One listing of the merge field alone (100 records a request)
//!   gives Airtable's exact count, the records Postgres lacks, the rows Airtable lacks, and
//!   duplicates (two records of one row).
//! - **Fields.** Every mapped column, both owners', links included: the record is converted
//!   as an import would convert it and Postgres casts both sides to the column's type, so
//!   "2024-01-05T10:00:00.000Z" and a timestamptz compare equal. Derived fields are compared
//!   with their view.
//! - **Sampling.** `--sample N` compares the fields of N random matched rows (read by record
//!   id, 50 a request) and keeps the exact counts.

use super::read_fields;
use crate::{
    airtable::{AirtableClient, AirtableError, Lane},
    inbound::apply::{Applier, ApplyError, Scope, Upsert, Writer},
    postgres::quote_ident,
};
use schema::mapping::{Mapping, TableId};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// A row Airtable has no record of.
    MissingInAirtable,
    /// A record Postgres has no row of.
    MissingInPostgres,
    /// More than one record for one row.
    Duplicate,
    /// A field whose values differ.
    Field,
}

impl DriftKind {
    pub const ALL: [DriftKind; 4] =
        [Self::MissingInAirtable, Self::MissingInPostgres, Self::Duplicate, Self::Field];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MissingInAirtable => "missing_in_airtable",
            Self::MissingInPostgres => "missing_in_postgres",
            Self::Duplicate => "duplicate",
            Self::Field => "field",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub table: String,
    pub kind: DriftKind,
    pub pg_id: Option<Uuid>,
    pub record_id: Option<String>,
    pub field: Option<String>,
    pub postgres: Value,
    pub airtable: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TableParity {
    pub table: String,
    pub postgres_rows: u64,
    pub airtable_records: u64,
    /// Rows whose fields were compared (all matched rows, or the sample).
    pub compared: u64,
    pub mismatches: Vec<Mismatch>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("Airtable: {0}")]
    Airtable(#[from] AirtableError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Apply(#[from] ApplyError),
}

pub struct Verifier {
    client: Arc<AirtableClient>,
    applier: Applier,
    mapping: Arc<Mapping>,
    pool: PgPool,
}

/// Records as the records API returns them, as (record id, cells).
fn by_record(records: Vec<Value>) -> impl Iterator<Item = (String, Map<String, Value>)> {
    records.into_iter().filter_map(|mut r| {
        let id = r["id"].as_str()?.to_owned();
        match r["fields"].take() {
            Value::Object(f) => Some((id, f)),
            _ => None,
        }
    })
}

/// Equal once Postgres cast both: empty text is no text, and link order does not matter.
fn same(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| match v {
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Array(items) => {
            let mut items = items.clone();
            items.sort_by_key(Value::to_string);
            if items.is_empty() {
                Value::Null
            } else {
                Value::Array(items)
            }
        }
        Value::Bool(false) => Value::Null,
        other => other.clone(),
    };
    match (norm(a), norm(b)) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9
        }
        (x, y) => x == y,
    }
}

impl Verifier {
    pub async fn new(
        client: Arc<AirtableClient>,
        mapping: Arc<Mapping>,
        pool: PgPool,
    ) -> Result<Self, VerifyError> {
        let applier =
            Applier::with_scope(mapping.clone(), pool.clone(), Scope::Import, Writer::Operator)
                .await?;
        Ok(Self { client, applier, mapping, pool })
    }

    /// Compares one table; `sample` bounds the rows whose fields are compared.
    pub async fn table(
        &self,
        ti: TableId,
        sample: Option<usize>,
    ) -> Result<TableParity, VerifyError> {
        let t = &self.mapping.tables[ti];
        let name = t.table.name;
        let merge = self.mapping.merge_field.clone();
        let fields = if sample.is_some() { vec![merge.clone()] } else { read_fields(t, &merge) };
        let mut records: HashMap<String, Map<String, Value>> = HashMap::new();
        let mut pages = super::Pages::new(&self.client, &t.airtable, None, &fields);
        while let Some(page) = pages.next().await? {
            records.extend(by_record(page));
        }
        let live = if t.table.rows_owned_by_airtable() { " WHERE deleted_at IS NULL" } else { "" };
        let rows: Vec<Uuid> =
            sqlx::query_scalar(&format!("SELECT id FROM {}{live}", quote_ident(name)))
                .fetch_all(&self.pool)
                .await?;
        let map: HashMap<String, Uuid> = sqlx::query_as::<_, (String, Uuid)>(
            "SELECT airtable_record_id, pg_id FROM airtable_id_map WHERE table_name = $1",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .collect();
        let row_set: HashSet<Uuid> = rows.iter().copied().collect();
        let mut out = TableParity {
            table: name.to_owned(),
            postgres_rows: rows.len() as u64,
            airtable_records: records.len() as u64,
            compared: 0,
            mismatches: Vec::new(),
        };
        let mismatch = |kind, pg_id, record_id: Option<&str>| Mismatch {
            table: name.to_owned(),
            kind,
            pg_id,
            record_id: record_id.map(str::to_owned),
            field: None,
            postgres: Value::Null,
            airtable: Value::Null,
        };
        // Each record's row: the id map first, then the pg id it carries.
        let mut by_row: HashMap<Uuid, Vec<String>> = HashMap::new();
        let mut record_ids: Vec<&String> = records.keys().collect();
        record_ids.sort();
        for rid in record_ids {
            let carried =
                records[rid].get(&merge).and_then(Value::as_str).and_then(|s| s.parse().ok());
            match map.get(rid).copied().or(carried).filter(|id| row_set.contains(id)) {
                Some(id) => by_row.entry(id).or_default().push(rid.clone()),
                None => {
                    out.mismatches.push(mismatch(DriftKind::MissingInPostgres, carried, Some(rid)))
                }
            }
        }
        let mut matched: Vec<(Uuid, String)> = Vec::new();
        for id in &rows {
            match by_row.get(id).map(Vec::as_slice) {
                None | Some([]) => {
                    out.mismatches.push(mismatch(DriftKind::MissingInAirtable, Some(*id), None))
                }
                Some([one]) => matched.push((*id, one.clone())),
                Some([first, rest @ ..]) => {
                    // The mapped record is the row's; the others are duplicates.
                    let keep = rest
                        .iter()
                        .chain([first])
                        .find(|r| map.get(*r) == Some(id))
                        .unwrap_or(first);
                    matched.push((*id, keep.clone()));
                    for r in std::iter::once(first).chain(rest).filter(|r| *r != keep) {
                        out.mismatches.push(mismatch(DriftKind::Duplicate, Some(*id), Some(r)));
                    }
                }
            }
        }
        if let Some(n) = sample {
            use rand::seq::SliceRandom;
            matched.shuffle(&mut rand::rng());
            matched.truncate(n);
            let ids: Vec<String> = matched.iter().map(|(_, r)| r.clone()).collect();
            let full = read_fields(t, &merge);
            records.extend(by_record(
                self.client.records_by_id(Lane::Bulk, &t.airtable, &ids, &full).await?,
            ));
        }
        out.compared = matched.len() as u64;
        for chunk in matched.chunks(500) {
            self.compare_fields(ti, chunk, &records, &mut out.mismatches).await?;
        }
        Ok(out)
    }

    /// What of `first` (a run of [`Verifier::table`]) still holds: the rows with field drift
    /// are read and compared again, membership is listed again when it drifted. Drift that
    /// was only in flight (a write not yet flushed, a change not yet polled) is gone by then.
    pub async fn confirm(
        &self,
        ti: TableId,
        first: &TableParity,
    ) -> Result<TableParity, VerifyError> {
        let t = &self.mapping.tables[ti];
        let key = |m: &Mismatch| (m.kind, m.pg_id, m.record_id.clone(), m.field.clone());
        let mut out = TableParity { mismatches: Vec::new(), ..first.clone() };
        let (fields, membership): (Vec<&Mismatch>, Vec<&Mismatch>) =
            first.mismatches.iter().partition(|m| m.kind == DriftKind::Field);
        if !membership.is_empty() {
            let again = self.table(ti, Some(0)).await?;
            let seen: HashSet<_> = again.mismatches.iter().map(key).collect();
            out.postgres_rows = again.postgres_rows;
            out.airtable_records = again.airtable_records;
            out.mismatches
                .extend(membership.into_iter().filter(|m| seen.contains(&key(m))).cloned());
        }
        let mut pairs: Vec<(Uuid, String)> =
            fields.iter().filter_map(|m| Some((m.pg_id?, m.record_id.clone()?))).collect();
        pairs.sort();
        pairs.dedup();
        if !pairs.is_empty() {
            let ids: Vec<String> = pairs.iter().map(|(_, r)| r.clone()).collect();
            let full = read_fields(t, &self.mapping.merge_field);
            let records: HashMap<_, _> =
                by_record(self.client.records_by_id(Lane::Bulk, &t.airtable, &ids, &full).await?)
                    .collect();
            let mut again = Vec::new();
            self.compare_fields(ti, &pairs, &records, &mut again).await?;
            let seen: HashSet<_> = fields.iter().map(|m| key(m)).collect();
            out.mismatches.extend(again.into_iter().filter(|m| seen.contains(&key(m))));
        }
        Ok(out)
    }

    /// Field by field, both sides cast by Postgres to the column types.
    async fn compare_fields(
        &self,
        ti: TableId,
        pairs: &[(Uuid, String)],
        records: &HashMap<String, Map<String, Value>>,
        out: &mut Vec<Mismatch>,
    ) -> Result<(), VerifyError> {
        let t = &self.mapping.tables[ti];
        let name = quote_ident(t.table.name);
        let upserts: Vec<Upsert> = pairs
            .iter()
            .map(|(_, rid)| Upsert {
                table: ti,
                record_id: rid.clone(),
                fields: records.get(rid).cloned().unwrap_or_default(),
                complete: true,
                changed_at: None,
            })
            .collect();
        let expected = self.applier.expected_values(&upserts).await?;
        let ids: Vec<Uuid> = pairs.iter().map(|(id, _)| *id).collect();
        let values: Vec<Value> = expected
            .iter()
            .map(|e| Value::Object(e.as_ref().cloned().unwrap_or_default()))
            .collect();
        // Both sides as Postgres types; an empty cell means the column's default.
        let built: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                let key = c.column.replace('\'', "''");
                format!("'{key}', {}", self.applier.value_expression(t.table.name, &c.column, "r"))
            })
            .collect();
        let cast: Vec<(Uuid, Value, Value)> = sqlx::query_as(&format!(
            "SELECT e.id, to_jsonb(t), jsonb_build_object({})
               FROM unnest($1::uuid[], $2::jsonb[]) AS e(id, v)
               CROSS JOIN LATERAL jsonb_populate_record(NULL::{name}, e.v) AS r
               JOIN {name} t ON t.id = e.id",
            built.join(", ")
        ))
        .bind(&ids)
        .bind(&values)
        .fetch_all(&self.pool)
        .await?;
        let cast: HashMap<Uuid, (Value, Value)> =
            cast.into_iter().map(|(id, a, e)| (id, (a, e))).collect();
        let derived = match schema::registry::derivation_of(t.table.name) {
            Some(d) if !t.derived.is_empty() => {
                let rows: Vec<(Uuid, Value)> = sqlx::query_as(&format!(
                    "SELECT {key}, to_jsonb(v) FROM {view} v WHERE {key} = ANY($1)",
                    key = quote_ident(d.key),
                    view = quote_ident(d.view)
                ))
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().collect::<HashMap<_, _>>()
            }
            _ => HashMap::new(),
        };
        for ((id, rid), exp) in pairs.iter().zip(&expected) {
            let push = |out: &mut Vec<Mismatch>, field: &str, pg: Value, at: Value| {
                out.push(Mismatch {
                    table: t.table.name.to_owned(),
                    kind: DriftKind::Field,
                    pg_id: Some(*id),
                    record_id: Some(rid.clone()),
                    field: Some(field.to_owned()),
                    postgres: pg,
                    airtable: at,
                })
            };
            let Some((actual, want)) = cast.get(id) else { continue };
            let record = records.get(rid);
            let raw = |f: &str| record.and_then(|r| r.get(f)).cloned().unwrap_or(Value::Null);
            if let Err(e) = exp {
                push(
                    out,
                    "(record)",
                    Value::Null,
                    Value::String(format!("{}: {}", e.code, e.message)),
                );
                continue;
            }
            for c in &t.columns {
                let (a, w) = (&actual[&c.column], &want[&c.column]);
                if !same(a, w) {
                    push(out, &c.field.field, a.clone(), raw(&c.field.field));
                }
            }
            if let Some(view) = derived.get(id) {
                for (column, f) in &t.derived {
                    if !same(&view[column], &raw(&f.field)) {
                        push(out, &f.field, view[column].clone(), raw(&f.field));
                    }
                }
            }
        }
        Ok(())
    }
}
