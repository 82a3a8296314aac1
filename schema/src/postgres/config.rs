//! The environment contract: DATABASE_URL, PGPOOL_MIN, PGPOOL_MAX,
//! PG_QUERY_TIMEOUT_MS, PG_IDLE_TIMEOUT_MS, PG_SSL_MODE, DB_APPLICATION_NAME.

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::{fmt, str::FromStr, time::Duration};

/// Why the environment does not describe a usable database.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    // Never echo the value: DATABASE_URL carries a password.
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// `PG_SSL_MODE`, with libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => return Err(format!("unknown ssl mode {other:?} (disable, allow, prefer, require, verify-ca, verify-full)")),
        })
    }
}

impl From<SslMode> for PgSslMode {
    fn from(m: SslMode) -> Self {
        match m {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        }
    }
}

/// How to reach Postgres and how to behave there.
#[derive(Clone)]
pub struct PgConfig {
    pub url: String,
    pub pool_min: u32,
    pub pool_max: u32,
    /// Sent as `statement_timeout` on every connection.
    pub query_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    /// Overrides any `sslmode` in the URL.
    pub ssl_mode: Option<SslMode>,
    /// `application_name` on every connection, so DBAs see who is connected.
    pub application_name: String,
    /// How long a caller waits for a free connection before the pool reports unavailable.
    pub acquire_timeout: Duration,
}

// Hand-written so the password never reaches a log line.
impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.redacted_url())
            .field("pool_min", &self.pool_min)
            .field("pool_max", &self.pool_max)
            .field("query_timeout", &self.query_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("ssl_mode", &self.ssl_mode)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl PgConfig {
    /// A config for `url` with the contract's defaults.
    pub fn new(url: impl Into<String>, application_name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_min: 0,
            pool_max: 10,
            query_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(600)),
            ssl_mode: None,
            application_name: application_name.into(),
            acquire_timeout: Duration::from_secs(5),
        }
    }

    /// Reads the contract from the process environment. `default_application_name` is used
    /// when DB_APPLICATION_NAME is unset (the binary's name).
    pub fn from_env(default_application_name: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok(), default_application_name)
    }

    /// Reads the contract through `lookup` (testable without touching the environment).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        default_application_name: &str,
    ) -> Result<Self, ConfigError> {
        let url = lookup("DATABASE_URL")
            .filter(|v| !v.trim().is_empty())
            .ok_or(ConfigError::Missing("DATABASE_URL"))?;
        let mut config = Self::new(url, default_application_name);
        if let Some(v) = lookup("PGPOOL_MIN") {
            config.pool_min = parse_number("PGPOOL_MIN", &v)?;
        }
        if let Some(v) = lookup("PGPOOL_MAX") {
            config.pool_max = parse_number("PGPOOL_MAX", &v)?;
        }
        if config.pool_max == 0 || config.pool_min > config.pool_max {
            return Err(ConfigError::Invalid {
                var: "PGPOOL_MAX",
                reason: format!(
                    "must be at least 1 and at least PGPOOL_MIN ({} > {})",
                    config.pool_min, config.pool_max
                ),
            });
        }
        if let Some(v) = lookup("PG_QUERY_TIMEOUT_MS") {
            config.query_timeout = parse_millis("PG_QUERY_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = lookup("PG_IDLE_TIMEOUT_MS") {
            config.idle_timeout = parse_millis("PG_IDLE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = lookup("PG_SSL_MODE").filter(|v| !v.is_empty()) {
            config.ssl_mode = Some(
                v.parse().map_err(|reason| ConfigError::Invalid { var: "PG_SSL_MODE", reason })?,
            );
        }
        if let Some(v) = lookup("DB_APPLICATION_NAME").filter(|v| !v.is_empty()) {
            config.application_name = v;
        }
        config.connect_options()?;
        Ok(config)
    }

    /// sqlx connect options with every contract setting applied.
    pub fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        let mut options =
            PgConnectOptions::from_str(&self.url).map_err(|e| ConfigError::Invalid {
                var: "DATABASE_URL",
                reason: redact_reason(&e.to_string(), &self.url),
            })?;
        options = options.application_name(&self.application_name);
        if let Some(mode) = self.ssl_mode {
            options = options.ssl_mode(mode.into());
        }
        if let Some(timeout) = self.query_timeout {
            options = options.options([("statement_timeout", timeout.as_millis().to_string())]);
        }
        Ok(options)
    }

    /// DATABASE_URL taken apart, with the TLS mode in force (`PG_SSL_MODE` over the URL's
    /// `sslmode`, `prefer` when neither says): the one parse of the URL for clients that need
    /// its parts (the replication protocol, the pipelined connections).
    pub fn parts(&self) -> Result<UrlParts, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid { var: "DATABASE_URL", reason };
        let url = url::Url::parse(&self.url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid("scheme must be postgres:// or postgresql://".into()));
        }
        let decode =
            |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let query_ssl =
            url.query_pairs().find(|(k, _)| k == "sslmode").map(|(_, v)| v.into_owned());
        let ssl = match (self.ssl_mode, query_ssl) {
            (Some(m), _) => m,
            (None, Some(v)) => v.parse().map_err(invalid)?,
            (None, None) => SslMode::Prefer,
        };
        Ok(UrlParts {
            host: url.host_str().unwrap_or("localhost").to_owned(),
            port: url.port().unwrap_or(5432),
            user: decode(url.username()),
            password: url.password().map(decode).unwrap_or_default().into(),
            database: decode(url.path().trim_start_matches('/')),
            ssl,
        })
    }

    /// The URL with any password replaced, for logs and messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// DATABASE_URL's parts ([`PgConfig::parts`]); the password never prints.
#[derive(Clone, Debug)]
pub struct UrlParts {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: secrecy::SecretString,
    pub database: String,
    pub ssl: SslMode,
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return "<unparseable url>".into() };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked =
                if userinfo.contains(':') { format!("{user}:***") } else { user.to_owned() };
            format!("{}{}{}", &url[..scheme_end + 3], masked, &rest[at..])
        }
        None => url.to_owned(),
    }
}

fn redact_reason(reason: &str, url: &str) -> String {
    reason.replace(url, &redact_url(url))
}

fn parse_number(var: &'static str, v: &str) -> Result<u32, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::Invalid {
        var,
        reason: format!("expected a whole number, got {v:?}"),
    })
}

/// Milliseconds; 0 disables the timeout.
fn parse_millis(var: &'static str, v: &str) -> Result<Option<Duration>, ConfigError> {
    let ms: u64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
        var,
        reason: format!("expected milliseconds as a whole number, got {v:?}"),
    })?;
    Ok((ms > 0).then(|| Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_the_whole_contract() {
        let c = PgConfig::from_lookup(
            lookup(&[
                ("DATABASE_URL", "postgres://u:pw@localhost:5432/db"),
                ("PGPOOL_MIN", "2"),
                ("PGPOOL_MAX", "7"),
                ("PG_QUERY_TIMEOUT_MS", "1500"),
                ("PG_IDLE_TIMEOUT_MS", "0"),
                ("PG_SSL_MODE", "require"),
                ("DB_APPLICATION_NAME", "web-jobs"),
            ]),
            "api",
        )
        .expect("valid");
        assert_eq!((c.pool_min, c.pool_max), (2, 7));
        assert_eq!(c.query_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.ssl_mode, Some(SslMode::Require));
        assert_eq!(c.application_name, "web-jobs");
    }

    #[test]
    fn defaults_application_name_to_the_binary() {
        let c =
            PgConfig::from_lookup(lookup(&[("DATABASE_URL", "postgres://localhost/db")]), "cdc")
                .expect("valid");
        assert_eq!(c.application_name, "cdc");
    }

    #[test]
    fn missing_and_invalid_values_name_the_variable() {
        let e = PgConfig::from_lookup(lookup(&[]), "api").unwrap_err();
        assert_eq!(e.to_string(), "DATABASE_URL is not set");
        let e = PgConfig::from_lookup(
            lookup(&[("DATABASE_URL", "postgres://localhost/db"), ("PGPOOL_MAX", "lots")]),
            "api",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("PGPOOL_MAX is invalid"), "{e}");
        let e = PgConfig::from_lookup(
            lookup(&[("DATABASE_URL", "postgres://localhost/db"), ("PG_SSL_MODE", "sometimes")]),
            "api",
        )
        .unwrap_err();
        assert!(e.to_string().contains("PG_SSL_MODE"), "{e}");
    }

    #[test]
    fn passwords_never_reach_debug_or_errors() {
        let c = PgConfig::new("postgres://app:hunter2@db.internal:5432/coach", "api");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("app:***@db.internal"), "{debug}");
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        let e = PgConfig::from_lookup(
            lookup(&[("DATABASE_URL", "postgres://u:hunter2@db:notaport/x")]),
            "api",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
