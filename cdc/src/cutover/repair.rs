//! `cdc verify --repair`: each drift set right by the side that owns it.
//!
//! | drift                            | repair                                               |
//! |----------------------------------|------------------------------------------------------|
//! | a Postgres-owned or derived field | the row re-sent: a repair backfill job `cdc run` runs |
//! | an Airtable-owned field          | the record re-applied inbound                        |
//! | a row Airtable lacks             | re-sent; where Airtable owns the rows and the record  |
//! |                                  | is known, its deletion applied inbound instead        |
//! | a record Postgres lacks          | re-imported (every mapped field)                     |
//! | a duplicate record               | deleted in Airtable (the mapped record stays)        |
//!
//! Postgres writes run under the operator's replication origin, so they never echo and may
//! run beside `cdc run`. Nothing is repaired by guessing: a record that cannot be converted,
//! or whose row has a pending outbound delete, is left and said why.

use super::{
    read_fields,
    verify::{DriftKind, TableParity, VerifyError},
};
use crate::{
    airtable::{AirtableClient, Lane},
    backfill::{self, JobId, NewJob, Reason},
    inbound::apply::{Applier, Batch, Scope, Upsert, Writer},
};
use schema::{
    mapping::{Mapping, TableId},
    registry::Owner,
};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::{collections::HashSet, sync::Arc};
use uuid::Uuid;

/// What a repair did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairSummary {
    pub table: String,
    /// Rows queued to be written to Airtable again.
    pub resent: u64,
    /// Records whose Airtable-owned fields were applied again.
    pub reapplied: u64,
    /// Records imported (rows created or completed).
    pub reimported: u64,
    /// Rows whose record Airtable deleted: the deletion applied.
    pub deleted_in_postgres: u64,
    /// Duplicate records deleted in Airtable.
    pub duplicates_removed: u64,
    /// What was not repaired, each with why and what to do.
    pub left: Vec<String>,
    /// The repair backfill jobs queued (done once `cdc run` has written them).
    pub jobs: Vec<JobId>,
}

/// The repairs one table's drift calls for, sorted by who carries them out.
#[derive(Default)]
struct Plan {
    resend: Vec<Uuid>,
    reapply: Vec<String>,
    reimport: Vec<String>,
    delete_inbound: Vec<String>,
    duplicates: Vec<String>,
}

pub struct Repairer {
    pub client: Arc<AirtableClient>,
    pub mapping: Arc<Mapping>,
    pub pool: PgPool,
}

impl Repairer {
    pub async fn repair(&self, parity: &TableParity) -> Result<RepairSummary, VerifyError> {
        let mut out = RepairSummary { table: parity.table.clone(), ..RepairSummary::default() };
        let Some(ti) = self.mapping.table_id(&parity.table) else { return Ok(out) };
        let t = &self.mapping.tables[ti];
        let plan = self.plan(parity, &mut out).await?;

        // Records Postgres lacks, with every mapped field (the import's scope).
        if !plan.reimport.is_empty() {
            let fields = read_fields(t, &self.mapping.merge_field);
            let records = self.read(ti, &plan.reimport, &fields).await?;
            let held = self.pending_deletes(t.table.name, &records).await?;
            let upserts: Vec<Upsert> = records
                .into_iter()
                .filter(|u| {
                    let carried = self.carried(u);
                    let keep = carried.is_none_or(|id| !held.contains(&id));
                    if !keep {
                        out.left.push(format!("{} record {}: its row was deleted in Postgres and the delete is dead-lettered; `cdc dlq replay` deletes the record", t.table.name, u.record_id));
                    }
                    keep
                })
                .collect();
            let applier = self.applier(Scope::Import).await?;
            let applied = applier.apply(Batch { upserts, ..Batch::default() }).await;
            applier.release().await;
            let applied = applied?;
            out.reimported = (applied.written + applied.unchanged) as u64;
            if applied.parked > 0 {
                out.left.push(format!("{} record(s) of {} refused by Postgres and dead-lettered: `cdc dlq list --direction inbound`", applied.parked, t.table.name));
            }
        }
        // Airtable-owned fields, and deletions Airtable made (the sync's own scope).
        if !plan.reapply.is_empty() || !plan.delete_inbound.is_empty() {
            let fields: Vec<String> = t
                .inbound()
                .map(|c| c.field.field.clone())
                .chain([self.mapping.merge_field.clone()])
                .collect();
            let upserts = self.read(ti, &plan.reapply, &fields).await?;
            out.reapplied = upserts.len() as u64;
            let deletes = plan.delete_inbound.iter().map(|r| (ti, r.clone())).collect();
            let applier = self.applier(Scope::Inbound).await?;
            let applied = applier.apply(Batch { upserts, deletes, ..Batch::default() }).await;
            applier.release().await;
            let applied = applied?;
            out.deleted_in_postgres = (applied.deleted + applied.soft_deleted) as u64;
        }
        // Rows Airtable should hold as Postgres has them: the daemon writes them, in its
        // budget and with its retries and dead letters.
        if !plan.resend.is_empty() {
            let jobs: Vec<NewJob> = plan
                .resend
                .chunks(1000)
                .map(|ids| NewJob::rows(t.table.name, ids, Reason::Repair))
                .collect();
            out.jobs = backfill::store::request(&self.pool, &jobs, true).await?;
            out.resent = plan.resend.len() as u64;
        }
        for chunk in plan.duplicates.chunks(10) {
            self.client.delete(Lane::Bulk, &t.airtable, chunk).await?;
            out.duplicates_removed += chunk.len() as u64;
        }
        Ok(out)
    }

    async fn plan(
        &self,
        parity: &TableParity,
        out: &mut RepairSummary,
    ) -> Result<Plan, VerifyError> {
        let mut plan = Plan::default();
        let Some(t) = self.mapping.table(&parity.table) else { return Ok(plan) };
        let mut resend = HashSet::new();
        let mut reapply = HashSet::new();
        let mut gone = Vec::new();
        for m in &parity.mismatches {
            match (m.kind, m.pg_id, m.record_id.clone()) {
                (DriftKind::Field, Some(id), Some(rid)) => {
                    let field = m.field.as_deref().unwrap_or_default();
                    let owner =
                        t.columns.iter().find(|c| c.field.field == field).map(|c| c.owner).or_else(
                            || {
                                t.derived
                                    .iter()
                                    .any(|(_, f)| f.field == field)
                                    .then_some(Owner::Postgres)
                            },
                        );
                    match owner {
                        Some(Owner::Postgres) => {
                            resend.insert(id);
                        }
                        Some(Owner::Airtable) => {
                            reapply.insert(rid);
                        }
                        None => out.left.push(format!(
                            "{} record {rid}: {} ({}); fix the record in Airtable",
                            parity.table, m.airtable, field
                        )),
                    }
                }
                (DriftKind::MissingInAirtable, Some(id), _) => gone.push(id),
                (DriftKind::MissingInPostgres, _, Some(rid)) => plan.reimport.push(rid),
                (DriftKind::Duplicate, _, Some(rid)) => plan.duplicates.push(rid),
                _ => {}
            }
        }
        // A row Airtable lacks: where Airtable decides which rows exist and knew the
        // record, the record was deleted there; otherwise Airtable should have it.
        let known: Vec<(Uuid, String)> = if t.table.rows_owned_by_airtable() {
            sqlx::query_as(
                "SELECT pg_id, airtable_record_id FROM airtable_id_map WHERE table_name = $1 AND pg_id = ANY($2)",
            )
            .bind(t.table.name)
            .bind(&gone)
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        for id in gone {
            match known.iter().find(|(k, _)| *k == id) {
                Some((_, rid)) => plan.delete_inbound.push(rid.clone()),
                None => {
                    resend.insert(id);
                }
            }
        }
        plan.resend = resend.into_iter().collect();
        plan.reapply = reapply.into_iter().collect();
        Ok(plan)
    }

    /// Records of table `ti` by id, as complete upserts.
    async fn read(
        &self,
        ti: TableId,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<Upsert>, VerifyError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let table = &self.mapping.tables[ti].airtable;
        let records = self.client.records_by_id(Lane::Bulk, table, ids, fields).await?;
        Ok(records
            .into_iter()
            .filter_map(|r| {
                Some(Upsert {
                    table: ti,
                    record_id: r["id"].as_str()?.to_owned(),
                    fields: r["fields"].as_object().cloned().unwrap_or_else(Map::new),
                    complete: true,
                    changed_at: None,
                })
            })
            .collect())
    }

    /// The pg id a record carries in the merge field.
    fn carried(&self, u: &Upsert) -> Option<Uuid> {
        u.fields.get(&self.mapping.merge_field).and_then(Value::as_str)?.parse().ok()
    }

    /// Of the rows these records carry, those whose outbound delete waits in the dead letters.
    async fn pending_deletes(
        &self,
        table: &str,
        records: &[Upsert],
    ) -> Result<HashSet<Uuid>, VerifyError> {
        let ids: Vec<Uuid> = records.iter().filter_map(|u| self.carried(u)).collect();
        let held: Vec<Uuid> = sqlx::query_scalar(
            "SELECT pg_id FROM sync_dead_letter
              WHERE direction = 'outbound' AND destination = 'airtable' AND operation = 'delete' AND status = 'pending'
                AND table_name = $1 AND pg_id = ANY($2)",
        )
        .bind(table)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(held.into_iter().collect())
    }

    /// One applier at a time: each holds the operator's origin for its session.
    async fn applier(&self, scope: Scope) -> Result<Applier, VerifyError> {
        Ok(Applier::with_scope(self.mapping.clone(), self.pool.clone(), scope, Writer::Operator)
            .await?)
    }
}
