//! The admin surface over HTTP (outside /v0, no auth: it is a local test instrument).

use crate::{admin::Admin, config::Faults, config::RateLimits, faults::Scripted, ApiError, Shared};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, patch, post, put},
    Json, Router,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

type S = State<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/state", get(|State(s): S| async move { Json(admin(&s).state()) }))
        .route(
            "/stats",
            get(|State(s): S| async move { Json(admin(&s).stats()) }).delete(
                |State(s): S| async move {
                    admin(&s).reset_stats();
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route("/requests", get(|State(s): S| async move { Json(admin(&s).request_log()) }))
        .route(
            "/faults",
            put(|State(s): S, Json(f): Json<Faults>| async move {
                admin(&s).set_faults(f);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/faults/script",
            post(|State(s): S, Json(f): Json<Vec<Scripted>>| async move {
                admin(&s).script_faults(f);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/limits",
            get(|State(s): S| async move { Json(admin(&s).limits()) }).put(
                |State(s): S, Json(l): Json<RateLimits>| async move {
                    admin(&s).set_limits(l);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/clock",
            post(|State(s): S, Json(c): Json<ClockMove>| async move {
                admin(&s).advance_clock(chrono::Duration::seconds(c.advance_seconds));
                StatusCode::NO_CONTENT
            }),
        )
        .route("/bases/{base}/tables/{table}/records", get(list).post(create))
        .route("/bases/{base}/tables/{table}/records/{id}", patch(update).delete(delete))
}

fn admin(s: &Arc<Shared>) -> Admin {
    Admin::new(s.clone())
}

#[derive(Deserialize)]
struct ClockMove {
    advance_seconds: i64,
}

fn respond(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list(State(s): S, Path((base, table)): Path<(String, String)>) -> Response {
    respond(admin(&s).records(&base, &table).map(|r| json!({ "records": r })))
}

/// `{"records":[{"fields":{…}}, …]}` or `{"fields":{…}}`.
async fn create(
    State(s): S,
    Path((base, table)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let records: Vec<Value> =
        match (body.get("records").and_then(Value::as_array), body.get("fields")) {
            (Some(list), _) => {
                list.iter().map(|r| r.get("fields").cloned().unwrap_or(json!({}))).collect()
            }
            (None, Some(f)) => vec![f.clone()],
            _ => return ApiError::invalid_records("expected records or fields").into_response(),
        };
    respond(admin(&s).create_records(&base, &table, records).map(|r| json!({ "records": r })))
}

async fn update(
    State(s): S,
    Path((base, table, id)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    respond(admin(&s).update_record(
        &base,
        &table,
        &id,
        body.get("fields").cloned().unwrap_or(json!({})),
    ))
}

async fn delete(State(s): S, Path((base, table, id)): Path<(String, String, String)>) -> Response {
    respond(
        admin(&s).delete_record(&base, &table, &id).map(|()| json!({ "id": id, "deleted": true })),
    )
}
