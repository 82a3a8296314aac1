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
