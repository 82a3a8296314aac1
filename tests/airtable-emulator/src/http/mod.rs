//! HTTP: `/v0/...` (Airtable's API) and `/_admin/...` (the admin surface).
//!
//! Every `/v0` request runs the same pipeline, in Airtable's order of refusals: URL length
//! (414), authentication (401), route (404), rate limits (429), injected faults, body size
//! (413) and JSON (400), then the operation itself; the outcome is counted.

mod admin;
mod meta;
mod query;
mod records;
mod route;
mod webhooks;

use crate::{
    error::ApiError,
    faults::{After, Before},
    limits::Refusal,
    lock,
    stats::LoggedRequest,
    Shared,
};
use axum::{
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, State},
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::any,
    Router,
};
use route::Route;
use serde_json::Value;
use std::{sync::Arc, time::Instant};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v0", any(v0))
        .route("/v0/", any(v0))
        .route("/v0/{*rest}", any(v0))
        .nest("/_admin", admin::router())
        .fallback(|| async { ApiError::NotFound })
        // Size is checked by the pipeline, to answer 413 in Airtable's shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// What a handler returns: the JSON body and how many records the request wrote.
pub(crate) type Handled = Result<(Value, usize), ApiError>;

/// Everything a handler needs to know about the request.
pub(crate) struct Request {
    pub uri: Uri,
    pub body: Bytes,
}

impl Request {
    /// The body as JSON; an empty body is `{}`.
    pub fn json(&self) -> Result<Value, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&self.body).map_err(|_| {
            ApiError::typed(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST_BODY",
                "Could not parse the request body as JSON",
            )
        })
    }

    pub fn query(&self) -> Vec<(String, String)> {
        query::pairs(self.uri.query().unwrap_or(""))
    }
}

async fn v0(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = Route::parse(&method, uri.path());
    let kind = route.kind();
    let base = route.base().map(str::to_owned);
    let table = route.table().map(str::to_owned);
    let hook = route.hook().map(str::to_owned);
    let epoch = headers
        .get("x-coach-leader-epoch")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (response, status, records) =
        pipeline(&shared, route, &headers, Request { uri, body }).await;
    let write = matches!(kind, "create" | "update" | "replace" | "upsert" | "delete");
    let at_ms = shared.started.elapsed().as_millis() as u64;
    lock(&shared.stats)
        .record(LoggedRequest { at_ms, kind, base, table, hook, status, records, epoch }, write);
    response
}

fn token_ok(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.config.token)
        && !shared.token_revoked.load(std::sync::atomic::Ordering::SeqCst)
}

/// A response whose body fails mid-stream: the client sees the connection drop.
fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("connection dropped by fault injection"))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

async fn pipeline(
    shared: &Arc<Shared>,
    route: Route,
    headers: &HeaderMap,
    req: Request,
) -> (Response, u16, usize) {
    let fail = |e: ApiError| {
        let s = e.status().as_u16();
        (e.into_response(), s, 0)
    };
    if req.uri.to_string().len() >= 16_000 {
        return fail(ApiError::typed(
            StatusCode::URI_TOO_LONG,
            "URL_TOO_LONG",
            "Request-URI Too Large",
        ));
    }
    if !token_ok(shared, headers) {
        return fail(ApiError::authentication_required());
    }
    if matches!(route, Route::NotFound) {
        return fail(ApiError::NotFound);
    }
    let limits = lock(&shared.limits).clone();
    let admitted = lock(&shared.limiter).admit(&limits, route.base(), Instant::now());
    if let Err(refusal) = admitted {
        let remaining = match refusal {
            Refusal::Exceeded { penalty } => penalty,
            Refusal::DuringPenalty { remaining } => {
                lock(&shared.stats).requests_during_penalty += 1;
                remaining
            }
        };
        let retry_after = limits.retry_after_header.then(|| remaining.as_secs_f64().ceil() as u64);
        return fail(ApiError::RateLimited { retry_after });
    }
    let plan = lock(&shared.faults).plan(route.is_write());
    if plan.before.is_some() || plan.after.is_some() {
        lock(&shared.stats).faults_injected += 1;
    }
    if !plan.latency.is_zero() {
        tokio::time::sleep(plan.latency).await;
    }
    match plan.before {
        Some(Before::Drop) => return (dropped(), 0, 0),
        Some(Before::BadGateway) => return fail(ApiError::BadGateway),
        Some(Before::Error(s)) => return fail(ApiError::Server(s)),
        Some(Before::RateLimit) => {
            lock(&shared.limiter).penalize(route.base(), limits.penalty, Instant::now());
            let retry_after = limits.retry_after_header.then_some(limits.penalty.as_secs());
            return fail(ApiError::RateLimited { retry_after });
        }
        None => {}
    }
    if req.body.len() > shared.config.max_body_bytes {
        return fail(ApiError::typed(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            "Request body too large",
        ));
    }
    let result = route.dispatch(shared, &req);
    match (result, plan.after) {
        (Ok(_), Some(After::Drop)) => (dropped(), 0, 0),
        (Ok(_), Some(After::Error)) => fail(ApiError::Server(StatusCode::INTERNAL_SERVER_ERROR)),
        (Ok((body, records)), None) => {
            let response = if body.is_null() {
                StatusCode::OK.into_response()
            } else {
                (StatusCode::OK, axum::Json(body)).into_response()
            };
            (response, 200, records)
        }
        (Err(e), _) => fail(e),
    }
}
