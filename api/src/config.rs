//! API configuration from the environment (README, "Environment").

use schema::postgres::{ConfigError, PgConfig};
use secrecy::SecretSlice;
use std::{net::SocketAddr, time::Duration};

#[derive(Clone)]
pub struct Config {
    /// API_ADDR, default 127.0.0.1:8080; port 0 picks a free port (tests).
    pub addr: SocketAddr,
    pub postgres: PgConfig,
    pub auth: AuthConfig,
    /// CORS_ORIGINS: the PWA's origins, comma separated; none means no cross-origin access.
    pub cors_origins: Vec<String>,
    /// REQUEST_TIMEOUT_MS
    pub request_timeout: Duration,
    /// MAX_BODY_BYTES
    pub max_body_bytes: usize,
    /// PG_PIPELINE_CONNECTIONS: shared connections the hottest reads are pipelined on (0 =
    /// the pool serves them too); by default one per core of this host.
    pub pipeline_connections: usize,
    /// READ_THROUGH_WAIT_MS: how long a login for an email Postgres lacks waits for the
    /// daemon to fetch it from Airtable; 0 turns read-through off.
    pub read_through_wait: Duration,
}

#[derive(Clone)]
pub struct AuthConfig {
    /// JWT_SECRET: HS256 key, at least 32 bytes (never printed).
    pub jwt_secret: SecretSlice<u8>,
    /// The verification key and rules, built once (not per request).
    pub(crate) verifier: std::sync::Arc<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
    /// ACCESS_TOKEN_TTL_SECONDS
    pub access_ttl: Duration,
    /// REFRESH_TOKEN_TTL_SECONDS
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("postgres", &self.postgres)
            .field("cors_origins", &self.cors_origins)
            .finish_non_exhaustive()
    }
}

use schema::env::{number, var};

impl AuthConfig {
    /// Refuses a missing or weak secret: fewer than 32 bytes, or too few distinct characters
    /// to be random ("aaaa…", "changeme…").
    pub fn new(secret: &str) -> Result<Self, ConfigError> {
        let distinct = secret.chars().collect::<std::collections::HashSet<_>>().len();
        if secret.len() < 32 || distinct < 10 {
            return Err(ConfigError::Invalid {
                var: "JWT_SECRET",
                reason: "must be at least 32 random bytes (e.g. `openssl rand -base64 48`)".into(),
            });
        }
        Ok(Self {
            jwt_secret: SecretSlice::from(secret.as_bytes().to_vec()),
            verifier: std::sync::Arc::new(crate::auth::jwt::verifier(secret.as_bytes())),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
        })
    }
}

impl Config {
    /// A config for tests and the local stack: everything but the database and secret defaulted.
    pub fn new(addr: SocketAddr, postgres: PgConfig, auth: AuthConfig) -> Self {
        Self {
            addr,
            postgres,
            auth,
            cors_origins: Vec::new(),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
            read_through_wait: Duration::from_secs(5),
            pipeline_connections: pipeline_default(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let addr = match var("API_ADDR") {
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                var: "API_ADDR",
                reason: format!("expected host:port, got {v:?}"),
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let mut auth =
            AuthConfig::new(&var("JWT_SECRET").ok_or(ConfigError::Missing("JWT_SECRET"))?)?;
        auth.access_ttl = Duration::from_secs(number("ACCESS_TOKEN_TTL_SECONDS", 900)?);
        auth.refresh_ttl =
            Duration::from_secs(number("REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600)?);
        let mut c = Self::new(addr, PgConfig::from_env("api")?, auth);
        c.cors_origins = var("CORS_ORIGINS")
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        c.request_timeout = Duration::from_millis(number("REQUEST_TIMEOUT_MS", 10_000)?);
        c.max_body_bytes = number::<usize>("MAX_BODY_BYTES", 64 * 1024)?;
        c.read_through_wait = Duration::from_millis(number("READ_THROUGH_WAIT_MS", 5_000)?);
        c.pipeline_connections = number::<usize>("PG_PIPELINE_CONNECTIONS", pipeline_default())?;
        Ok(c)
    }
}

/// One pipelined connection per core: more backends than cores mostly add switching, while
/// fewer pipelines run deeper (`benches/api` on 2 cores: 8 connections gave 0.75-0.80x
/// pgbench for programs, 2 gave 0.87-0.94x at half the p95).
fn pipeline_default() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_refused() {
        assert!(AuthConfig::new("short").is_err());
        assert!(AuthConfig::new(&"a".repeat(64)).is_err());
        assert!(AuthConfig::new("changemechangemechangemechangeme").is_err());
        assert!(AuthConfig::new("k3J9xQ2vLp8ZrT5wYb1NcH7mFd4sGa6E").is_ok());
    }
}
