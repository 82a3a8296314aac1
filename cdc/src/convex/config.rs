//! The Convex mirror's configuration (README, "Environment").

use schema::env::{number, var};
use schema::postgres::ConfigError;
use secrecy::SecretString;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ConvexConfig {
    /// CONVEX_URL, no trailing slash: the deployment (`https://NAME.convex.cloud`).
    pub url: String,
    /// CONVEX_DEPLOY_KEY (a secret: never printed).
    pub deploy_key: SecretString,
    /// CONVEX_FLUSH_MS: how long changes may wait to be coalesced (100 ms).
    pub flush_window: Duration,
    /// Rows buffered before a flush is forced (bounds memory).
    pub max_pending_rows: usize,
    /// Changes per mirror:apply call (the module takes at most 100).
    pub batch_changes: usize,
    /// JSON bytes of changes per call (Convex takes 16 MiB of arguments).
    pub batch_bytes: usize,
    /// CONVEX_CONCURRENCY: calls of one table's batch in flight at once (8).
    pub concurrency: usize,
    /// Attempts per call before its changes are dead-lettered.
    pub max_attempts: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub request_timeout: Duration,
    /// CONVEX_BACKFILL_ROWS: rows per backfill chunk (500).
    pub backfill_chunk: usize,
    /// CONVEX_BACKFILL_RPS: the backfill's throttle in rows per second (2,000; 0: none).
    pub backfill_rps: u32,
    /// CONVEX_PARITY_INTERVAL_MS: how often the daemon checks parity (counts and a sample of
    /// row hashes per table, `mirror_parity_drift`); 0 disables. 1 hour.
    pub parity_interval: Option<Duration>,
    /// CONVEX_PARITY_SAMPLE: rows per table the daemon's parity check hashes (200).
    pub parity_sample: usize,
}

impl ConvexConfig {
    pub fn new(url: impl Into<String>, deploy_key: impl Into<String>) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            deploy_key: SecretString::from(deploy_key.into()),
            flush_window: Duration::from_millis(100),
            max_pending_rows: 5_000,
            batch_changes: 100,
            batch_bytes: 8 << 20,
            concurrency: 8,
            max_attempts: 8,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            backfill_chunk: 500,
            backfill_rps: 2_000,
            parity_interval: Some(Duration::from_secs(3600)),
            parity_sample: 200,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let url = var("CONVEX_URL").ok_or(ConfigError::Missing("CONVEX_URL"))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                var: "CONVEX_URL",
                reason: format!(
                    "expected the deployment's URL (https://NAME.convex.cloud), got {url:?}"
                ),
            });
        }
        let key = var("CONVEX_DEPLOY_KEY").ok_or(ConfigError::Missing("CONVEX_DEPLOY_KEY"))?;
        let mut c = Self::new(url, key);
        c.flush_window = Duration::from_millis(number("CONVEX_FLUSH_MS", 100u64)?);
        c.concurrency = number("CONVEX_CONCURRENCY", c.concurrency)?.max(1);
        c.max_attempts = number("CONVEX_MAX_ATTEMPTS", c.max_attempts)?.max(1);
        c.backfill_chunk = number("CONVEX_BACKFILL_ROWS", c.backfill_chunk)?.max(1);
        c.backfill_rps = number("CONVEX_BACKFILL_RPS", c.backfill_rps)?;
        c.parity_interval = Some(number("CONVEX_PARITY_INTERVAL_MS", 3_600_000u64)?)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        c.parity_sample = number("CONVEX_PARITY_SAMPLE", c.parity_sample)?;
        Ok(c)
    }
}
