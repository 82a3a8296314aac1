use crate::AppState;
use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

/// Liveness: the process answers.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: Postgres answers and the schema is current.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let r = schema::postgres::readiness(&state.pool).await;
    let status = if r.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(json!({ "ready": r.is_ready(), "checks": r })))
}
