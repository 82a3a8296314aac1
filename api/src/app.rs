//! Building and running the server: `Application::build`, then `port()`, then
//! `run_until_stopped()`.

use crate::{
    auth::{access::Access, read_through::ReadThrough},
    data::pipeline::Pipeline,
    middleware, routes, AppState, Config,
};
use schema::postgres::{self, migrate::MigrationError, DbError};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the API refuses to start; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: DbError },
    #[error("refusing to start: {0}")]
    Schema(#[from] MigrationError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
}

impl Application {
    /// Connects, checks the schema is current, binds. Nothing is served yet.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        // Before anything is measured: metrics recorded without a recorder are lost.
        routes::health::register_metrics();
        let pool = postgres::connect(&config.postgres).await.map_err(|source| {
            StartError::Connect { url: config.postgres.redacted_url(), source }
        })?;
        postgres::migrate::ensure_current(&pool).await?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind { addr: config.addr, source })?;
        let read_through = (!config.read_through_wait.is_zero())
            .then(|| Arc::new(ReadThrough::start(pool.clone(), config.read_through_wait)));
        let pipeline = Pipeline::connect(&config.postgres, config.pipeline_connections).await;
        let access = Access::start(pool.clone()).await.map(Arc::new).map_err(|e| {
            StartError::Connect { url: config.postgres.redacted_url(), source: e.into() }
        })?;
        let state = AppState::new(crate::state::Parts {
            pool,
            auth: config.auth.clone(),
            pipeline,
            read_through,
            access,
        });
        let router = middleware::wrap(routes::router(state), &config);
        Ok(Self { listener, router })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(schema::shutdown::signalled())
            .await
    }
}
