//! A strict local Airtable, following `shared/airtable-api.md`: the records API (list, get,
//! create, update, replace, upsert, delete), webhooks with signed pings, the Meta API, rate
//! limits with the 30 s penalty, and seeded fault injection. It rejects what Airtable rejects:
//! an emulator that accepts more than Airtable hides bugs.
//!
//! In-process: [`Emulator::start`] on port 0, then [`Emulator::url`] and [`Emulator::admin`].
//! Standalone: the `airtable-emulator` binary.

pub mod admin;
mod clock;
pub mod config;
mod error;
pub mod faults;
mod formula;
mod http;
mod ids;
mod limits;
pub mod model;
mod pinger;
pub mod stats;
pub mod webhooks;

pub use admin::Admin;
pub use config::{EmulatorConfig, Faults, RateLimits, SchemaFile};
pub use faults::Scripted;
pub use stats::{LoggedRequest, Stats};
pub use webhooks::mac_header;

use clock::Clock;
use model::World;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// State shared by the HTTP handlers, the admin surface and the ping workers.
pub(crate) struct Shared {
    pub config: EmulatorConfig,
    pub world: Mutex<World>,
    pub clock: Clock,
    pub limits: Mutex<RateLimits>,
    pub limiter: Mutex<limits::Limiter>,
    pub faults: Mutex<faults::Injector>,
    pub stats: Mutex<Stats>,
    pub pingers: Mutex<HashMap<String, Arc<pinger::Pinger>>>,
    pub http: reqwest::Client,
    pub started: Instant,
    /// Pings are "delivered" without reaching the receiver (a lost notification).
    pub lose_pings: std::sync::atomic::AtomicBool,
    /// The token was revoked: every request answers 401 until it is restored.
    pub token_revoked: std::sync::atomic::AtomicBool,
    /// The token's scopes now (the admin may grant or take them).
    pub scopes: Mutex<Vec<String>>,
}

/// Locks a mutex; a panic elsewhere while holding it does not take the emulator down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why an emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid schema: {0}")]
    Schema(String),
    #[error("cannot build the HTTP client for pings: {0}")]
    Client(#[from] reqwest::Error),
}

/// A running emulator; dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds `addr` (port 0 picks a free port) and serves in the background.
    pub async fn start(config: EmulatorConfig, addr: SocketAddr) -> Result<Self, StartError> {
        let mut world = match &config.schema {
            Some(schema) => World::from_schema(schema).map_err(StartError::Schema)?,
            None => World::default(),
        };
        world.inferred = config.schema.is_none();
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            clock: Clock::default(),
            limits: Mutex::new(config.limits.clone()),
            limiter: Mutex::new(limits::Limiter::default()),
            faults: Mutex::new(faults::Injector::new(config.faults.clone(), config.seed)),
            stats: Mutex::new(Stats::default()),
            pingers: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder().timeout(config.ping_timeout).build()?,
            scopes: Mutex::new(config.scopes.clone()),
            started: Instant::now(),
            config,
            lose_pings: std::sync::atomic::AtomicBool::new(false),
            token_revoked: std::sync::atomic::AtomicBool::new(false),
        });
        let listener =
            TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let (tx, rx) = oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "emulator server stopped");
            }
        });
        Ok(Self { shared, addr, shutdown: Some(tx), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`, with no trailing slash (clients append `/v0/...`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.shared.config.token
    }

    /// Acts as a person in Airtable's UI, reads state and counters, injects faults.
    pub fn admin(&self) -> Admin {
        Admin::new(self.shared.clone())
    }

    /// Serves until the process is told to stop (for the binary).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for p in lock(&self.shared.pingers).values() {
            p.stop();
        }
    }
}

pub use error::ApiError;

impl Shared {
    pub(crate) fn scopes(&self) -> Vec<String> {
        lock(&self.scopes).clone()
    }

    /// Runs one write transaction on a table and publishes its changes to the base's
    /// webhooks as coming from `source` (`publicApi` for the API, `client` for the UI).
    pub(crate) fn write<T>(
        &self,
        base_id: &str,
        table: &str,
        source: &str,
        op: impl FnOnce(
            &mut model::Base,
            usize,
            chrono::DateTime<chrono::Utc>,
        ) -> Result<(T, model::Changes), ApiError>,
    ) -> Result<T, ApiError> {
        let now = self.clock.now();
        let (out, pings) = {
            let mut world = lock(&self.world);
            let inferred = world.inferred;
            let base = world.base_mut(base_id)?;
            let ti = base.table_index(table, inferred)?;
            let (out, changes) = op(base, ti, now)?;
            let pings = base.publish(&changes, source, now, self.config.max_records_per_payload);
            (out, pings)
        };
        pinger::request_pings(self, &pings);
        Ok(out)
    }

    /// Runs a read on a table.
    pub(crate) fn read<T>(
        &self,
        base_id: &str,
        table: &str,
        op: impl FnOnce(&model::Base, usize) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut world = lock(&self.world);
        let inferred = world.inferred;
        let base = world.base_mut(base_id)?;
        let ti = base.table_index(table, inferred)?;
        op(base, ti)
    }
}
