//! Pool creation and query timing.

use super::{DbError, PgConfig};
use sqlx::{postgres::PgPoolOptions, PgPool};
use std::{future::Future, time::Instant};

/// Opens a pool per `config` and checks that one connection works, so a wrong URL or an
/// unreachable server is reported at start, not at the first request.
pub async fn connect(config: &PgConfig) -> Result<PgPool, DbError> {
    let options = config.connect_options().map_err(|e| {
        tracing::error!(error = %e, "invalid database configuration");
        DbError::new(super::DbErrorKind::Internal)
    })?;
    let pool = PgPoolOptions::new()
        .min_connections(config.pool_min)
        .max_connections(config.pool_max)
        .idle_timeout(config.idle_timeout)
        .acquire_timeout(config.acquire_timeout)
        // sqlx pings every connection before handing it out: a round trip per query. A broken
        // connection fails its query instead (mapped to Unavailable) and is discarded.
        .test_before_acquire(false)
        .connect_with(options)
        .await?;
    tracing::info!(
        url = %config.redacted_url(),
        application_name = %config.application_name,
        pool_max = config.pool_max,
        "connected to postgres"
    );
    Ok(pool)
}

/// Awaits a query, recording its duration under `name` and mapping its error.
pub async fn timed<T, F>(name: &'static str, query: F) -> Result<T, DbError>
where
    F: Future<Output = Result<T, sqlx::Error>>,
{
    let started = Instant::now();
    let result = query.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("db_query_duration_seconds", "query" => name, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result.map_err(DbError::from)
}

/// Publishes the pool's size and idle connections as gauges (call it on scrape).
pub fn record_pool_metrics(pool: &PgPool) {
    let size = pool.size();
    let idle = pool.num_idle() as u32;
    metrics::gauge!("db_pool_connections").set(f64::from(size));
    metrics::gauge!("db_pool_idle_connections").set(f64::from(idle));
    metrics::gauge!("db_pool_busy_connections").set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("db_pool_max_connections").set(f64::from(pool.options().get_max_connections()));
}
