//! The daemon's own sampled verify: every SYNC_VERIFY_INTERVAL_MS, each mapped table's
//! exact counts and membership, and the fields of a random sample of its rows
//! (SYNC_VERIFY_SAMPLE), compared as `cdc verify --sample` compares them. Its requests are
//! bulk-lane requests of the shared budget, so the users lane never waits behind it.
//!
//! Drift is reported only when a second look SYNC_VERIFY_SETTLE_MS later still sees it: a
//! write still in flight is not drift. It repairs nothing (that is `cdc verify --repair`,
//! an operator's decision); it measures, for the alert on `sync_parity_drift`.

use super::Inbound;
use crate::cutover::verify::{DriftKind, Verifier};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// How many drifted rows a run names in the log (the gauge counts them all).
const LOGGED: usize = 20;

impl Inbound {
    pub(super) async fn parity_task(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let Some(every) = self.config.verify_interval else { return };
        let mapping = self.applier.mapping().clone();
        for t in &mapping.tables {
            for kind in DriftKind::ALL {
                metrics::gauge!("sync_parity_drift", "table" => t.table.name, "kind" => kind.as_str())
                    .set(0.0);
            }
        }
        let mut shutdown = shutdown;
        let mut verifier = None;
        loop {
            // The first run waits one interval too: at start the stream may be catching up.
            tokio::select! {
                _ = tokio::time::sleep(self.shape(every)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if verifier.is_none() {
                let pool = self.applier.pool().clone();
                match Verifier::new(self.client.clone(), mapping.clone(), pool).await {
                    Ok(v) => verifier = Some(v),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot prepare the parity check");
                        metrics::counter!("inbound_errors_total", "task" => "parity").increment(1);
                        continue;
                    }
                }
            }
            if let Some(v) = &verifier {
                crate::airtable::calls::shaped(self.parity_run(v)).await;
            }
        }
    }

    async fn parity_run(&self, verifier: &Verifier) {
        let mapping = self.applier.mapping();
        let started = std::time::Instant::now();
        let mut drifted = 0usize;
        for ti in mapping.table_ids() {
            let name = mapping.tables[ti].table.name;
            let confirmed = match verifier.table(ti, Some(self.config.verify_sample)).await {
                Ok(first) if first.mismatches.is_empty() => Ok(first),
                Ok(first) => {
                    tokio::time::sleep(self.config.verify_settle).await;
                    verifier.confirm(ti, &first).await
                }
                Err(e) => Err(e),
            };
            let parity = match confirmed {
                Ok(p) => p,
                Err(e) => {
                    // That table's gauge keeps its last value; the next run tries again.
                    tracing::warn!(table = name, error = %e, "parity check failed");
                    metrics::counter!("inbound_errors_total", "task" => "parity").increment(1);
                    continue;
                }
            };
            for kind in DriftKind::ALL {
                let n = parity.mismatches.iter().filter(|m| m.kind == kind).count();
                metrics::gauge!("sync_parity_drift", "table" => name, "kind" => kind.as_str())
                    .set(n as f64);
            }
            for m in parity.mismatches.iter().take(LOGGED.saturating_sub(drifted)) {
                tracing::warn!(
                    table = name,
                    kind = m.kind.as_str(),
                    pg_id = ?m.pg_id,
                    record = ?m.record_id,
                    field = ?m.field,
                    postgres = %m.postgres,
                    airtable = %m.airtable,
                    "parity drift: `cdc verify --repair` sets it right"
                );
            }
            drifted += parity.mismatches.len();
        }
        metrics::counter!("sync_parity_runs_total").increment(1);
        metrics::gauge!("sync_parity_last_run_timestamp_seconds")
            .set(chrono::Utc::now().timestamp() as f64);
        tracing::info!(
            drift = drifted,
            ms = started.elapsed().as_millis() as u64,
            "parity check done"
        );
    }
}

/// SYNC_VERIFY_INTERVAL_MS's default: daily. A run lists every table once (its merge field
/// alone, 100 records a request): 50k records cost 500 requests, 15k a month.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
