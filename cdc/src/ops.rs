//! The daemon's one HTTP listener (METRICS_ADDR): /metrics, /healthz, /readyz, and
//! POST /webhooks/airtable when the inbound side runs.

use crate::replication::StreamHealth;
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
        .route("/metrics", get(|| async { prometheus().render() }))
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

async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    if let Some(problem) = ops.slot_problem.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        return (StatusCode::SERVICE_UNAVAILABLE, problem);
    }
    if !ops.stream.connected.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "replication stream not connected (yet); see the logs".into(),
        );
    }
    (StatusCode::OK, "ready".into())
}
