//! The safety poll and the full reconcile.
//!
//! - Poll: records modified since the table's checkpoint minus an overlap (clock skew between
//!   Airtable and us loses nothing; re-applying an unchanged record writes nothing). The
//!   checkpoint (`inbound.poll.<table>`) is the time the listing started, committed with
//!   the changes.
//! - Reconcile: every record of the table, applied, and the rows whose records are gone
//!   deleted (or soft-deleted): deletions nothing reported. A table without a checkpoint
//!   starts with one (the backfill).

use super::InboundError;
use super::{apply::Batch, read_through::Lookup, Inbound};
use crate::airtable::client::formula_string;
use chrono::{DateTime, SecondsFormat, Utc};
use schema::mapping::TableId;
use serde_json::json;
use std::{collections::HashSet, sync::Arc};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

/// Upserts per transaction in a reconcile: bounded transactions and memory per step.
const RECONCILE_CHUNK: usize = 500;

fn checkpoint_name(table: &str) -> String {
    format!("inbound.poll.{table}")
}

impl Inbound {
    /// One poll of `table`; a table never polled is reconciled instead. Returns the number
    /// of records read.
    pub async fn poll_table(&self, table: TableId) -> Result<usize, InboundError> {
        let t = &self.applier.mapping().tables[table];
        let started = Utc::now();
        let since = self
            .applier
            .checkpoint(&checkpoint_name(t.table.name))
            .await?
            .and_then(|v| v["since"].as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()))
            .map(|s| s.with_timezone(&Utc));
        let Some(since) = since else { return self.reconcile_table(table).await };
        metrics::counter!("inbound_poll_runs_total", "table" => t.table.name).increment(1);
        let from = since - chrono::Duration::from_std(self.config.overlap).unwrap_or_default();
        let formula = format!(
            "IS_AFTER(LAST_MODIFIED_TIME(), DATETIME_PARSE({}))",
            formula_string(&from.to_rfc3339_opts(SecondsFormat::Secs, true))
        );
        let records = self
            .client
            .list_records(self.lane(table), &t.airtable, Some(&formula), &self.read_fields(t))
            .await?;
        let upserts = self.with_parents(self.upserts(table, &records)).await?;
        let batch = Batch {
            upserts,
            checkpoints: vec![(
                checkpoint_name(t.table.name),
                json!({ "since": started.to_rfc3339() }),
            )],
            ..Batch::default()
        };
        let applied = self.applier.apply(batch).await?;
        if applied.written > 0 && Some(table) == self.users() {
            self.users_changed();
        }
        if applied.written > 0 {
            tracing::info!(
                table = t.table.name,
                read = records.len(),
                written = applied.written,
                "poll applied changes"
            );
        }
        self.stamps_queued(&applied.to_stamp);
        Ok(records.len())
    }

    /// Every record of `table` applied, vanished rows deleted, pg ids written where missing.
    pub async fn reconcile_table(&self, table: TableId) -> Result<usize, InboundError> {
        let t = &self.applier.mapping().tables[table];
        let started = Utc::now();
        metrics::counter!("inbound_reconcile_runs_total", "table" => t.table.name).increment(1);
        self.reconciling(table);
        let records = self
            .client
            .list_records(self.lane(table), &t.airtable, None, &self.read_fields(t))
            .await?;
        let present: HashSet<String> =
            records.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect();
        let merge = &self.applier.mapping().merge_field;
        let unstamped: Vec<String> = records
            .iter()
            .filter(|r| r["fields"][merge].as_str().is_none_or(str::is_empty))
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        let mut all = self.upserts(table, &records);
        while !all.is_empty() {
            let rest = all.split_off(all.len().min(RECONCILE_CHUNK));
            let chunk = std::mem::replace(&mut all, rest);
            let applied = self
                .applier
                .apply(Batch { upserts: self.with_parents(chunk).await?, ..Batch::default() })
                .await?;
            self.stamps_queued(&applied.to_stamp);
        }
        let mut batch = Batch::default();
        if t.table.rows_owned_by_airtable() {
            batch.deletes = self
                .applier
                .inferred_deletes(table, &present, self.config.delete_guard)
                .await?
                .into_iter()
                .map(|r| (table, r))
                .collect();
        }
        batch
            .checkpoints
            .push((checkpoint_name(t.table.name), json!({ "since": started.to_rfc3339() })));
        let applied = self.applier.apply(batch).await?;
        if applied.deleted + applied.soft_deleted > 0 {
            tracing::info!(
                table = t.table.name,
                deleted = applied.deleted,
                soft_deleted = applied.soft_deleted,
                "reconcile removed rows Airtable no longer has"
            );
        }
        // Records mapped earlier whose pg id never reached Airtable.
        if !unstamped.is_empty() {
            let ids = self.applier.mapped_records(t.table.name, &unstamped).await?;
            let to_stamp: Vec<_> = ids.into_iter().map(|(r, id)| (table, r, id)).collect();
            self.applier.queue_stamps(&to_stamp).await?;
            self.stamps_queued(&to_stamp);
        }
        Ok(records.len())
    }

    /// One email looked up in Airtable at top priority (a login is waiting).
    pub async fn look_up_user(&self, email: &str) -> Result<bool, InboundError> {
        let Some(users) = self.users() else { return Ok(false) };
        let t = &self.applier.mapping().tables[users];
        let field =
            t.column("email").map(|c| c.field.field.clone()).unwrap_or_else(|| "Email".into());
        // The email is a quoted, escaped string: it can never change the formula.
        let formula = format!("LOWER({{{field}}})=LOWER({})", formula_string(email));
        let records = self
            .client
            .list_records(super::Lane::Fast, &t.airtable, Some(&formula), &self.read_fields(t))
            .await?;
        if records.is_empty() {
            return Ok(false);
        }
        let upserts = self.with_parents(self.upserts(users, &records)).await?;
        let applied = self.applier.apply(Batch { upserts, ..Batch::default() }).await?;
        self.stamps_queued(&applied.to_stamp);
        Ok(true)
    }

    /// The users lane: read-through lookups first, then the users poll on its interval.
    pub(super) async fn users_task(
        self: Arc<Self>,
        mut lookups: mpsc::Receiver<Lookup>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(users) = self.users() else { return };
        // Emails Airtable lacked: when asked, and the users generation then.
        let mut negative: std::collections::HashMap<String, (Instant, u64)> = Default::default();
        let mut last_poll = Instant::now();
        loop {
            // From the last poll, at the interval the webhooks' health gives now: a health
            // change (backstops_due) moves the deadline either way.
            let next_poll = last_poll + self.poll_interval(true);
            tokio::select! {
                biased;
                _ = super::stopped(&mut shutdown) => return,
                Some(lookup) = lookups.recv() => {
                    let generation = self.users_generation();
                    negative.retain(|_, (at, g)| {
                        at.elapsed() < self.config.negative_cache && *g == generation
                    });
                    let outcome = if negative.contains_key(&lookup.email) {
                        "cached_missing"
                    } else {
                        match self.look_up_user(&lookup.email).await {
                            Ok(true) => "found",
                            Ok(false) => {
                                negative.insert(lookup.email.clone(), (Instant::now(), generation));
                                "not_found"
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "read-through lookup failed");
                                "error"
                            }
                        }
                    };
                    if outcome != "found" {
                        super::read_through::answer_missing(self.applier.pool(), &lookup.email).await;
                    }
                    metrics::counter!("inbound_read_through_total", "outcome" => outcome).increment(1);
                    metrics::histogram!("inbound_fast_lane_seconds").record(lookup.at.elapsed().as_secs_f64());
                }
                _ = self.backstops_due.notified() => {}
                _ = tokio::time::sleep_until(next_poll) => {
                    let started = Instant::now();
                    if let Err(e) = crate::airtable::calls::shaped(self.poll_table(users)).await {
                        metrics::counter!("inbound_errors_total", "task" => "users").increment(1);
                        tracing::warn!(error = %e, "users poll failed");
                    }
                    metrics::histogram!("inbound_poll_duration_seconds", "table" => "users").record(started.elapsed().as_secs_f64());
                    last_poll = Instant::now();
                }
            }
        }
    }

    /// Everything else: polls of the other tables, the full reconcile, housekeeping. The
    /// first round also covers users, and reconciles every table without a checkpoint (the
    /// backfill).
    pub(super) async fn bulk_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let users = self.users();
        let mut tables = self.inbound_tables();
        tables.sort_by_key(|t| (Some(*t) != users, *t));
        let mut first = true;
        let mut reconcile_now = false;
        let mut last_reconcile = Instant::now();
        loop {
            let periodic = self.reconcile_interval().is_some_and(|r| last_reconcile.elapsed() >= r);
            let reconcile = reconcile_now || periodic;
            for &ti in &tables {
                // The users lane polls users on its own interval.
                if !first && !reconcile && Some(ti) == users {
                    continue;
                }
                // A new hook asked for it, but the table was listed whole since (at start,
                // the backfill's first pass): listing it again would find nothing new.
                if reconcile && !periodic && self.reconciled_since_asked(ti) {
                    continue;
                }
                let name = self.applier.mapping().tables[ti].table.name;
                let started = Instant::now();
                let result = if reconcile {
                    crate::airtable::calls::shaped(self.reconcile_table(ti)).await
                } else {
                    crate::airtable::calls::shaped(self.poll_table(ti)).await
                };
                if let Err(e) = result {
                    metrics::counter!("inbound_errors_total", "task" => "bulk").increment(1);
                    tracing::warn!(table = name, error = %e, "inbound poll failed; the next round retries");
                }
                metrics::histogram!("inbound_poll_duration_seconds", "table" => name)
                    .record(started.elapsed().as_secs_f64());
            }
            // Decisions made with the CLI count here too.
            if let Ok(n) = self.applier.count_held().await {
                self.held_deletes.store(n, std::sync::atomic::Ordering::Relaxed);
            }
            if reconcile {
                last_reconcile = Instant::now();
                reconcile_now = false;
                if let Err(e) = self.applier.purge_events(8).await {
                    tracing::warn!(error = %e, "cannot purge old inbox events");
                }
            }
            first = false;
            let round = Instant::now();
            loop {
                // A health change (backstops_due) moves the next round either way.
                tokio::select! {
                    _ = self.reconcile_due.notified() => {
                        reconcile_now = true;
                        break;
                    }
                    _ = tokio::time::sleep_until(round + self.poll_interval(false)) => break,
                    _ = self.backstops_due.notified() => {}
                    _ = super::stopped(&mut shutdown) => return,
                }
            }
        }
    }
}
