use crate::AppState;
use axum::{extract::State, http::StatusCode, Json};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/api/health", tag = "ops", responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    ready: bool,
    postgres: bool,
    migrations_current: bool,
    problems: Vec<String>,
}

/// Registers, at 0, the series an alert or a dashboard panel reads before anything happens.
pub fn register_metrics() {
    let _ = schema::metrics::prometheus();
    for outcome in ["synced", "missing", "timed_out"] {
        metrics::counter!("api_read_through_total", "outcome" => outcome).absolute(0);
    }
    metrics::counter!("api_access_refresh_errors_total").absolute(0);
    metrics::gauge!("api_access_revoked_users").set(0.0);
    metrics::gauge!("api_ready").set(0.0);
}

/// The metrics, with the pool's figures and `api_ready` as /api/ready would answer now.
pub async fn metrics(state: AppState) -> String {
    schema::postgres::record_pool_metrics(&state.pool);
    let ready = schema::postgres::readiness(&state.pool).await.is_ready();
    metrics::gauge!("api_ready").set(if ready { 1.0 } else { 0.0 });
    schema::metrics::prometheus().render()
}

/// Readiness: Postgres reachable and migrations current.
#[utoipa::path(get, path = "/api/ready", tag = "ops", responses((status = 200, body = Ready), (status = 503, body = Ready)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    schema::postgres::record_pool_metrics(&state.pool);
    let r = schema::postgres::readiness(&state.pool).await;
    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(Ready {
            ready: r.is_ready(),
            postgres: r.postgres,
            migrations_current: r.migrations_current,
            problems: r.problems,
        }),
    )
}
