//! The daemon's one HTTP listener (METRICS_ADDR): /metrics, /healthz, /readyz.

use crate::replication::StreamHealth;
use axum::{extract::State, http::StatusCode, routing::get, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc, Mutex, OnceLock},
};
use tokio::net::TcpListener;

/// The process's Prometheus recorder, installed on first use (the metrics facade is
/// process-wide by design; every daemon in the process shares it).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets =
                [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// What readiness reads.
#[derive(Clone)]
pub struct Ops {
    pub stream: Arc<StreamHealth>,
    /// Set by the lag sampler when the slot is missing, unreserved or lost (with the fix).
    pub slot_problem: Arc<Mutex<Option<String>>>,
}

pub async fn serve(
    addr: SocketAddr,
    ops: Ops,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(|| async { prometheus().render() }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(ops);
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
