//! The daemon's configuration (README, "Environment").

use schema::postgres::{ConfigError, PgConfig};
use std::{net::SocketAddr, time::Duration};

/// The replication origin inbound writes run under; the outbound stream skips it.
pub const INBOUND_ORIGIN: &str = "coach_inbound";

#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub postgres: PgConfig,
    /// CDC_SLOT
    pub slot: String,
    /// CDC_PUBLICATION
    pub publication: String,
    /// METRICS_ADDR: /metrics, /healthz, /readyz (and later /webhooks/airtable).
    pub metrics_addr: SocketAddr,
    /// CDC_STATUS_INTERVAL_MS: how often the position is reported to the server.
    pub status_interval: Duration,
    /// CDC_LAG_INTERVAL_MS: how often slot lag and WAL retention are sampled.
    pub lag_interval: Duration,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn millis(name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match var(name) {
        None => Ok(Duration::from_millis(default)),
        Some(v) => v.parse().map(Duration::from_millis).map_err(|_| ConfigError::Invalid {
            var: name,
            reason: format!("expected milliseconds, got {v:?}"),
        }),
    }
}

impl CdcConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let slot = var("CDC_SLOT").unwrap_or_else(|| "coach_cdc".into());
        if !crate::postgres::slot::valid_name(&slot) {
            return Err(ConfigError::Invalid {
                var: "CDC_SLOT",
                reason: format!("{slot:?}: use lowercase letters, digits and _ (at most 63)"),
            });
        }
        let metrics_addr = match var("METRICS_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 9464)),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                var: "METRICS_ADDR",
                reason: format!("expected host:port, got {v:?}"),
            })?,
        };
        Ok(Self {
            postgres: PgConfig::from_env("cdc")?,
            slot,
            publication: var("CDC_PUBLICATION").unwrap_or_else(|| "coach_pub".into()),
            metrics_addr,
            status_interval: millis("CDC_STATUS_INTERVAL_MS", 1000)?,
            lag_interval: millis("CDC_LAG_INTERVAL_MS", 5000)?,
        })
    }
}

/// The tables the publication holds: every published table of the registry.
pub fn published_tables() -> Vec<(String, String)> {
    schema::registry::TABLES
        .iter()
        .filter(|t| t.is_published())
        .map(|t| ("public".to_owned(), t.name.to_owned()))
        .collect()
}
