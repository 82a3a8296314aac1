//! A local Convex deployment for the mirror: the HTTP functions API (`POST /api/mutation`,
//! `POST /api/query`, `Authorization: Convex <deploy key>`) serving `mirror:apply` and
//! `mirror:snapshot` with the semantics of `convex/mirror.ts` ([`store`]), Convex's limits,
//! scripted faults and counters. Function results come back as Convex answers them: HTTP 200
//! with `{"status":"success","value":…}` or `{"status":"error","errorMessage":…}`.

pub mod store;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Map, Value};
use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};
use store::{Applied, Change, Doc, Store, MAX_ARGS_BYTES};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// How an emulator starts.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The deploy key callers must present.
    pub deploy_key: String,
    /// The mirrored tables (convex/schema.ts's TABLES).
    pub tables: Vec<String>,
    /// Keep every applied change in order ([`Admin::history`]).
    pub keep_history: bool,
    /// Added to every call (a network and a function's run time).
    pub latency: Duration,
}

impl EmulatorConfig {
    pub fn new(tables: &[&str]) -> Self {
        Self {
            deploy_key: "test-deployment|emulator-deploy-key".into(),
            tables: tables.iter().map(|t| (*t).to_owned()).collect(),
            keep_history: false,
            latency: Duration::ZERO,
        }
    }
}

/// A fault forced onto the next calls, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status without running the function.
    Status(u16),
    /// Run the function, then answer 500 (the result is lost on the way back).
    FailAfterApply,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub mutations: u64,
    pub queries: u64,
    pub changes: u64,
    pub applied: u64,
    pub stale: u64,
    /// Calls answered with a function error.
    pub function_errors: u64,
    pub unauthorized: u64,
    pub faults: u64,
}

struct Shared {
    config: EmulatorConfig,
    store: Mutex<Store>,
    stats: Mutex<Stats>,
    faults: Mutex<VecDeque<Fault>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    _task: JoinHandle<()>,
}

impl Emulator {
    /// Binds `addr` (port 0 picks a free port) and serves in the background.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(&config.tables, config.keep_history)),
            config,
            stats: Mutex::default(),
            faults: Mutex::default(),
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = Router::new()
            .route("/api/mutation", post(mutation))
            .route("/api/query", post(query))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_ARGS_BYTES + 1024))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "convex emulator stopped");
            }
        });
        Ok(Self { shared, addr, shutdown: Some(tx), _task: task })
    }

    /// `http://127.0.0.1:PORT` (CONVEX_URL).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn deploy_key(&self) -> &str {
        &self.shared.config.deploy_key
    }

    pub fn admin(&self) -> Admin {
        Admin(self.shared.clone())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads state and counters, plants drift, scripts faults.
#[derive(Clone)]
pub struct Admin(Arc<Shared>);

impl Admin {
    pub fn stats(&self) -> Stats {
        *lock(&self.0.stats)
    }

    /// A table's documents (tombstones included) in pgId order; None when not mirrored.
    pub fn table(&self, table: &str) -> Option<Vec<Doc>> {
        lock(&self.0.store).table(table)
    }

    /// Every applied change in order (with `keep_history`).
    pub fn history(&self) -> Vec<Applied> {
        lock(&self.0.store).history.clone().unwrap_or_default()
    }

    /// Sets (or with None removes) a document behind the daemon's back.
    pub fn plant(&self, table: &str, id: &str, doc: Option<Map<String, Value>>) {
        lock(&self.0.store).plant(table, id, doc);
    }

    pub fn fail_next(&self, faults: &[Fault]) {
        lock(&self.0.faults).extend(faults.iter().copied());
    }
}

fn success(value: Value) -> Response {
    Json(json!({ "status": "success", "value": value, "logLines": [] })).into_response()
}

fn function_error(shared: &Shared, message: String) -> Response {
    lock(&shared.stats).function_errors += 1;
    Json(json!({ "status": "error", "errorMessage": message, "errorData": null, "logLines": [] }))
        .into_response()
}

/// Checks the deploy key and the body's shape; Err is the answer to send.
#[allow(clippy::result_large_err)] // the Err is the answer itself, sent at once
fn call<'a>(
    shared: &Shared,
    headers: &HeaderMap,
    body: &'a Value,
    path: &str,
    size: usize,
) -> Result<&'a Value, Response> {
    let want = format!("Convex {}", shared.config.deploy_key);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        lock(&shared.stats).unauthorized += 1;
        let body = json!({ "code": "BadAdminKey", "message": "The provided admin key was invalid for this instance" });
        return Err((StatusCode::UNAUTHORIZED, Json(body)).into_response());
    }
    if body.get("format").is_some_and(|f| f != "json") {
        return Err((
            StatusCode::BAD_REQUEST,
            Json(json!({ "code": "BadFormat", "message": "format must be json" })),
        )
            .into_response());
    }
    match body.get("path").and_then(Value::as_str) {
        Some(p) if p == path => {}
        other => {
            return Err(function_error(
                shared,
                format!("Could not find function for '{}'", other.unwrap_or("")),
            ))
        }
    }
    if size > MAX_ARGS_BYTES {
        return Err(function_error(
            shared,
            format!("Arguments are too large (at most {MAX_ARGS_BYTES} bytes)"),
        ));
    }
    Ok(&body["args"])
}

/// The body as JSON (Convex answers 400 to one that is not), and its size.
#[allow(clippy::result_large_err)] // the Err is the answer itself, sent at once
fn parse(raw: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(raw).map_err(|e| {
        let body = json!({ "code": "BadJsonBody", "message": e.to_string() });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    })
}

async fn mutation(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    let mut body = match parse(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = call(&shared, &headers, &body, "mirror:apply", raw.len()) {
        return r;
    }
    lock(&shared.stats).mutations += 1;
    let fault = lock(&shared.faults).pop_front();
    if let Some(Fault::Status(s)) = fault {
        lock(&shared.stats).faults += 1;
        return StatusCode::from_u16(s)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let changes: Vec<Change> = match serde_json::from_value(body["args"]["changes"].take()) {
        Ok(c) => c,
        Err(e) => return function_error(&shared, format!("ArgumentValidationError: {e}")),
    };
    let n = changes.len() as u64;
    let result = lock(&shared.store).apply(changes);
    match result {
        Ok(out) => {
            {
                let mut s = lock(&shared.stats);
                s.changes += n;
                s.applied += out.applied;
                s.stale += out.stale;
            }
            if fault == Some(Fault::FailAfterApply) {
                lock(&shared.stats).faults += 1;
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            success(json!(out))
        }
        Err(message) => function_error(&shared, format!("Uncaught Error: {message}")),
    }
}

async fn query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    let body = match parse(&raw) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let args = match call(&shared, &headers, &body, "mirror:snapshot", raw.len()) {
        Ok(a) => a,
        Err(r) => return r,
    };
    lock(&shared.stats).queries += 1;
    let (Some(table), Some(n)) =
        (args.get("table").and_then(Value::as_str), args.get("numItems").and_then(Value::as_f64))
    else {
        return function_error(
            &shared,
            "ArgumentValidationError: table and numItems are required".into(),
        );
    };
    let cursor = args.get("cursor").and_then(Value::as_str);
    let page = lock(&shared.store).snapshot(table, cursor, n);
    match page {
        Ok(v) => success(v),
        Err(message) => function_error(&shared, format!("Uncaught Error: {message}")),
    }
}
