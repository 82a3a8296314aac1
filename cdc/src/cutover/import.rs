//! `cdc import`: every record of every mapped table into Postgres.
//!
//! - **Parents first**, in the mapping's order, so every link resolves through
//!   `airtable_id_map` (a link to a record that is not there is dead-lettered).
//! - **Every mapped column**, both owners' ([`Scope::Import`]), under the inbound
//!   replication origin: the stream never echoes the import back to Airtable.
//! - **Idempotent.** A record maps to its row through `airtable_id_map`, or through the pg id
//!   it carries; otherwise it gets a new id, stored with the row in one transaction. A record
//!   seen again writes nothing when nothing changed. Never a second row.
//! - **Resumable.** Finished tables are checkpointed (`cutover.import`); a re-run after a
//!   kill continues with the first unfinished table (which is listed again: idempotent).
//! - **Reads only**: one list page (100 records) per request; nothing is written back to
//!   Airtable (the first outbound write of a row goes by record id and stamps its pg id).
//! - **Bad records** are dead-lettered (direction inbound, stable codes, the raw record) and
//!   counted; the import goes on.

use super::{read_fields, Pages};
use crate::{
    airtable::{client::formula_string, AirtableClient, AirtableError},
    backfill::{self, NewJob, Reason},
    inbound::apply::{Applier, ApplyError, Batch, Scope, Upsert, Writer},
    postgres::checkpoint,
};
use chrono::{DateTime, SecondsFormat, Utc};
use schema::mapping::Mapping;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::{collections::BTreeMap, sync::Arc};

const CHECKPOINT: &str = "cutover.import";

/// What an import did with one table's records.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableSummary {
    pub table: String,
    /// Records Airtable listed.
    pub listed: u64,
    /// Rows created or changed.
    pub imported: u64,
    /// Rows that already held the record's state.
    pub unchanged: u64,
    /// Records the import does not take (none today; kept so every record is accounted for).
    pub skipped: u64,
    pub dead_lettered: u64,
}

impl TableSummary {
    /// Records neither imported, unchanged, skipped nor dead-lettered: always 0 unless
    /// something is wrong, and then the import fails.
    pub fn unaccounted(&self) -> u64 {
        self.listed
            .saturating_sub(self.imported + self.unchanged + self.skipped + self.dead_lettered)
    }
}

/// What the import reports as it goes (bars on a terminal, JSON lines otherwise).
pub trait Progress {
    /// A table starts; `estimate` is how many records it probably has, when known.
    fn started(&mut self, table: &str, estimate: Option<u64>);
    fn advanced(&mut self, so_far: &TableSummary);
    fn finished(&mut self, summary: &TableSummary, resumed: bool);
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only records Airtable changed after this time (roll forward after a rollback).
    pub since: Option<DateTime<Utc>>,
    /// Only these Postgres tables (in mapping order); all when empty.
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    since: Option<DateTime<Utc>>,
    tables: Vec<String>,
    done: BTreeMap<String, TableSummary>,
    finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("Airtable: {0}")]
    Airtable(#[from] AirtableError),
    #[error("{0}")]
    Apply(#[from] ApplyError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Refused(String),
}

pub struct Importer {
    client: Arc<AirtableClient>,
    applier: Applier,
    mapping: Arc<Mapping>,
    pool: PgPool,
}

impl Importer {
    pub async fn new(
        client: Arc<AirtableClient>,
        mapping: Arc<Mapping>,
        pool: PgPool,
    ) -> Result<Self, ImportError> {
        let applier =
            Applier::with_scope(mapping.clone(), pool.clone(), Scope::Import, Writer::Operator)
                .await?;
        Ok(Self { client, applier, mapping, pool })
    }

    /// Imports, table by table; returns every table's summary (those a resumed run had
    /// finished before included).
    pub async fn run(
        &self,
        options: &Options,
        progress: &mut dyn Progress,
    ) -> Result<Vec<TableSummary>, ImportError> {
        for t in &options.tables {
            if self.mapping.table(t).is_none() {
                return Err(ImportError::Refused(format!("{t} is not a mapped table")));
            }
        }
        let mut state = match self.state().await? {
            Some(s) if !s.finished && s.since == options.since && s.tables == options.tables => s,
            _ => State { since: options.since, tables: options.tables.clone(), ..State::default() },
        };
        self.save(&state).await?;
        let mut out = Vec::new();
        for t in &self.mapping.tables {
            let name = t.table.name;
            if !options.tables.is_empty() && !options.tables.iter().any(|x| x == name) {
                continue;
            }
            if let Some(done) = state.done.get(name) {
                progress.finished(done, true);
                out.push(done.clone());
                continue;
            }
            let rows: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {}",
                crate::postgres::quote_ident(name)
            ))
            .fetch_one(&self.pool)
            .await?;
            progress.started(name, (options.since.is_none() && rows > 0).then_some(rows as u64));
            let summary = self.table(t.table.name, options.since, progress).await?;
            progress.finished(&summary, false);
            state.done.insert(name.to_owned(), summary.clone());
            self.save(&state).await?;
            out.push(summary);
        }
        // Derived fields (program progress) are Postgres's to compute: their tables are
        // re-sent once, so Airtable holds what the imported rows add up to (one write per
        // 10 rows; a job already queued is not queued twice).
        let derived: Vec<NewJob> = self
            .mapping
            .tables
            .iter()
            .filter(|t| !t.derived.is_empty() && out.iter().any(|s| s.imported > 0))
            .map(|t| NewJob::whole(t.table.name, Reason::Repair))
            .collect();
        backfill::store::request(&self.pool, &derived, true).await?;
        state.finished = true;
        self.save(&state).await?;
        Ok(out)
    }

    async fn table(
        &self,
        name: &str,
        since: Option<DateTime<Utc>>,
        progress: &mut dyn Progress,
    ) -> Result<TableSummary, ImportError> {
        let ti = self.mapping.table_id(name).ok_or_else(|| ImportError::Refused(name.into()))?;
        let t = &self.mapping.tables[ti];
        let fields = read_fields(t, &self.mapping.merge_field);
        let formula = since.map(|s| {
            format!(
                "IS_AFTER(LAST_MODIFIED_TIME(), DATETIME_PARSE({}))",
                formula_string(&s.to_rfc3339_opts(SecondsFormat::Secs, true))
            )
        });
        let mut summary = TableSummary { table: name.to_owned(), ..TableSummary::default() };
        let mut seen = std::collections::HashSet::new();
        let mut pages = Pages::new(&self.client, &t.airtable, formula.as_deref(), &fields);
        while let Some(records) = pages.next().await? {
            // A listing that started over lists records again: each is taken once.
            let upserts: Vec<Upsert> = records
                .into_iter()
                .filter_map(|r| {
                    let id = r["id"].as_str()?.to_owned();
                    let fields = match &r["fields"] {
                        Value::Object(m) => m.clone(),
                        _ => Map::new(),
                    };
                    Some(Upsert {
                        table: ti,
                        record_id: id,
                        fields,
                        complete: true,
                        changed_at: None,
                    })
                })
                .filter(|u| seen.insert(u.record_id.clone()))
                .collect();
            let fresh = upserts.len() as u64;
            let applied = self.applier.apply(Batch { upserts, ..Batch::default() }).await?;
            summary.listed += fresh;
            summary.imported += applied.written as u64;
            summary.unchanged += applied.unchanged as u64;
            summary.skipped += applied.ignored as u64;
            summary.dead_lettered += applied.parked as u64;
            metrics::counter!("cutover_import_records_total", "table" => t.table.name)
                .increment(fresh);
            progress.advanced(&summary);
        }
        Ok(summary)
    }

    async fn state(&self) -> sqlx::Result<Option<State>> {
        let v = checkpoint::read(&self.pool, CHECKPOINT).await?;
        Ok(v.and_then(|v| serde_json::from_value(v).ok()))
    }

    async fn save(&self, state: &State) -> sqlx::Result<()> {
        checkpoint::write(&self.pool, CHECKPOINT, &json!(state)).await
    }
}
