//! The daemon's one HTTP listener (METRICS_ADDR): /metrics, /healthz, /readyz, and
//! POST /webhooks/airtable when the inbound side runs.

use crate::{
    leadership::{Fence, Mode},
    replication::StreamHealth,
};
use axum::{extract::State, http::StatusCode, routing::get, Router};
use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex},
};
use tokio::net::TcpListener;

pub use schema::metrics::prometheus;

/// What readiness reads.
#[derive(Clone)]
pub struct Ops {
    pub stream: Arc<StreamHealth>,
    /// Set by the lag sampler when the slot is missing, unreserved or lost (with the fix).
    pub slot_problem: Arc<Mutex<Option<String>>>,
    /// Inferred deletions held for an operator: ready, with a warning.
    pub held_deletes: Arc<std::sync::atomic::AtomicI64>,
    /// The role: leader, standby (and who leads), or neither yet.
    pub fence: Arc<Fence>,
}

/// Registers, at 0, every counter and gauge an alert reads, so a rule sees a series from
/// the start instead of "no data" until the first failure.
pub fn register_metrics() {
    let _ = prometheus();
    for name in [
        "cdc_reconnects_total",
        "cdc_isolated_changes_total",
        "cdc_transactions_total",
        "cdc_echo_suppressed_transactions_total",
        "airtable_rate_limited_total",
        "sync_reconcile_runs_total",
        "sync_coalesced_changes_total",
        "inbound_payloads_fetched_total",
        "inbound_duplicate_deliveries_total",
        "inbound_webhooks_created_total",
        "sync_backfill_chunks_total",
        "sync_backfill_rows_superseded_total",
        "sync_parity_runs_total",
        "inbound_stamps_written_total",
        "inbound_stamp_failures_total",
        "cdc_leader_takeovers_total",
        "cdc_leader_check_failures_total",
        "cdc_leader_lease_waits_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    for op in ["upsert", "delete", "list", "update", "webhooks", "payloads", "meta"] {
        metrics::counter!("airtable_retries_total", "op" => op).absolute(0);
        metrics::counter!("airtable_unauthorized_total", "op" => op).absolute(0);
    }
    for (direction, destination) in
        [("outbound", "airtable"), ("inbound", "airtable"), ("outbound", "convex")]
    {
        for name in ["sync_dlq_added_total", "sync_dlq_repeats_total"] {
            metrics::counter!(name, "direction" => direction, "destination" => destination)
                .absolute(0);
        }
    }
    for kind in ["orphan", "duplicate", "missing"] {
        metrics::counter!("sync_reconcile_fixed_total", "kind" => kind).absolute(0);
    }
    metrics::counter!("cdc_destination_paused_total", "cause" => "auth").absolute(0);
    for hook in ["users", "base"] {
        metrics::counter!("inbound_unread_payloads_found_total", "hook" => hook).absolute(0);
        metrics::counter!("inbound_pings_covered_total", "hook" => hook).absolute(0);
        metrics::counter!("inbound_pings_forwarded_total", "hook" => hook).absolute(0);
        metrics::counter!("inbound_pings_from_standbys_total", "hook" => hook).absolute(0);
    }
    metrics::gauge!("inbound_webhooks_healthy").set(0.0);
    metrics::gauge!("airtable_calls_projected_monthly").set(0.0);
    metrics::gauge!("airtable_call_budget_exceeded").set(0.0);
    for task in ["webhook", "users", "bulk", "parity"] {
        metrics::counter!("inbound_errors_total", "task" => task).absolute(0);
    }
    for gauge in [
        "cdc_replication_lag_seconds",
        "cdc_replication_lag_bytes",
        "cdc_retained_wal_bytes",
        "cdc_destination_paused",
        "sync_dlq_pending",
        "sync_backfill_jobs_open",
        "sync_parity_last_run_timestamp_seconds",
        "cdc_ready",
        "cdc_leader",
        "cdc_leader_epoch",
        "inbound_stamps_pending",
    ] {
        metrics::gauge!(gauge).set(0.0);
    }
}

/// Serves the ops endpoints, plus `extra` (the inbound webhook receiver) when given.
pub async fn serve(
    addr: SocketAddr,
    ops: Ops,
    extra: Option<Router>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(ops);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "ops listener stopped");
        }
    });
    Ok((local, task))
}

/// The metrics, with `cdc_ready` as /readyz would answer now (alerts read it).
async fn metrics(State(ops): State<Ops>) -> String {
    let ready = readiness(&ops).is_ok();
    metrics::gauge!("cdc_ready").set(if ready { 1.0 } else { 0.0 });
    prometheus().render()
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    match readiness(&ops) {
        Ok(role) => match ops.held_deletes.load(Ordering::Relaxed) {
            0 => (StatusCode::OK, role),
            n => (
                StatusCode::OK,
                format!("{role}; warning: {n} inferred deletion(s) held for approval: see `cdc inbound deletes list`"),
            ),
        },
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Ready in a role ("ready": the leader, streaming; "standby ready": able to take over), or
/// why not.
fn readiness(ops: &Ops) -> Result<String, String> {
    if let Some(problem) = ops.slot_problem.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return Err(problem);
    }
    match ops.fence.mode() {
        Mode::Open => return Err("starting: not standing by or leading yet".into()),
        Mode::Deposed { reason } => return Err(format!("not leading any more: {reason}")),
        Mode::Standby { reachable: Err(why), .. } => return Err(format!("standby: {why}")),
        Mode::Standby { leader, .. } => {
            return Ok(format!(
                "standby ready (leader: {})",
                leader.as_deref().unwrap_or("none yet")
            ))
        }
        Mode::Leading { .. } => {}
    }
    if let Some(cause) = ops.stream.paused() {
        return Err(format!("sync paused: the destination refuses the daemon: {cause}"));
    }
    if !ops.stream.connected.load(Ordering::SeqCst) {
        return Err("leader: replication stream not connected (yet); see the logs".into());
    }
    Ok("ready (leader)".into())
}
