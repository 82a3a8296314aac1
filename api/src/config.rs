//! API configuration from the environment (README, "Environment").

use schema::postgres::{ConfigError, PgConfig};
use std::net::SocketAddr;

#[derive(Debug, Clone)]
pub struct Config {
    /// API_ADDR, default 127.0.0.1:8080; port 0 picks a free port (tests).
    pub addr: SocketAddr,
    pub postgres: PgConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let addr = match std::env::var("API_ADDR") {
            Ok(v) if !v.is_empty() => v.parse().map_err(|_| ConfigError::Invalid {
                var: "API_ADDR",
                reason: format!("expected host:port, got {v:?}"),
            })?,
            _ => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        Ok(Self { addr, postgres: PgConfig::from_env("api")? })
    }
}
