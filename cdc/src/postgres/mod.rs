//! Ordinary SQL for the daemon (tokio-postgres): connection info from the environment
//! contract, slots, the publication, and the checks of `cdc check`.

pub mod check;
pub mod checkpoint;
pub mod dead_letter;
pub mod logins;
pub mod publication;
pub mod slot;

use pgwire_replication::{Lsn, TlsConfig};
use schema::postgres::{PgConfig, SslMode};
use secrecy::{ExposeSecret, SecretString};
use std::{sync::Arc, time::Duration};

/// A failure of the daemon's ordinary SQL.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
}

impl SqlError {
    pub fn code(&self) -> Option<&str> {
        match self {
            SqlError::Postgres(e) => e.code().map(|c| c.code()),
            SqlError::Tls(_) => None,
        }
    }
}

/// Where and as whom to connect, parsed from DATABASE_URL (the replication protocol client
/// needs the parts, not a URL); the password never prints.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: SecretString,
    pub database: String,
    pub ssl: SslMode,
}

/// Why DATABASE_URL cannot be used for replication.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnInfoError(String);

impl ConnInfo {
    pub fn from_config(pg: &PgConfig) -> Result<Self, ConnInfoError> {
        let p = pg.parts().map_err(|e| ConnInfoError(e.to_string()))?;
        Ok(Self {
            host: p.host,
            port: p.port,
            user: p.user,
            password: p.password,
            database: p.database,
            ssl: p.ssl,
        })
    }

    /// TLS for the replication connection. `prefer`/`allow` connect in plain text: the
    /// replication client does not fall back, so ask for `require` where TLS matters.
    pub fn tls(&self) -> TlsConfig {
        match self.ssl {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => TlsConfig::disabled(),
            SslMode::Require => TlsConfig::require(),
            SslMode::VerifyCa => TlsConfig::verify_ca(None),
            SslMode::VerifyFull => TlsConfig::verify_full(None),
        }
    }

    fn tokio_config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .password(self.password.expose_secret())
            .dbname(&self.database)
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(10));
        c
    }
}

/// Connects for ordinary SQL; the connection runs on its own task.
pub async fn connect(
    conn: &ConnInfo,
    application_name: &str,
) -> Result<tokio_postgres::Client, SqlError> {
    let config = conn.tokio_config(application_name);
    let client = match conn.ssl {
        SslMode::Disable | SslMode::Allow | SslMode::Prefer => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
                }
            });
            client
        }
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| SqlError::Tls(e.to_string()))?;
            let (client, connection) =
                config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
                }
            });
            client
        }
    };
    Ok(client)
}

/// Moves the slot's confirmed position to `lsn` (after the stream disconnected, so the
/// walsender no longer holds it; waits briefly for that).
pub async fn advance_slot(
    conn: &ConnInfo,
    application_name: &str,
    slot: &str,
    lsn: Lsn,
) -> Result<(), SqlError> {
    if lsn == Lsn::ZERO {
        return Ok(());
    }
    let client = connect(conn, application_name).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match slot::advance(&client, slot, lsn).await {
            Ok(()) => return Ok(()),
            // 55006: the slot is still active for the walsender that is shutting down.
            Err(e) if e.code() == Some("55006") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `"ident"` with embedded quotes doubled: identifiers are never interpolated raw.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_info_comes_from_the_url_with_secrets_decoded_and_hidden() {
        let c = ConnInfo::from_config(&PgConfig::new(
            "postgres://cdc:p%40ss@db.internal:6543/coach?sslmode=require",
            "cdc",
        ))
        .expect("valid");
        assert_eq!(
            (
                c.host.as_str(),
                c.port,
                c.user.as_str(),
                c.password.expose_secret(),
                c.database.as_str()
            ),
            ("db.internal", 6543, "cdc", "p@ss", "coach")
        );
        assert_eq!(c.ssl, SslMode::Require);
        assert!(!format!("{c:?}").contains("p@ss"));
        let mut pg = PgConfig::new("postgres://u@h/d?sslmode=require", "cdc");
        pg.ssl_mode = Some(SslMode::Disable);
        assert_eq!(
            ConnInfo::from_config(&pg).expect("valid").ssl,
            SslMode::Disable,
            "PG_SSL_MODE wins"
        );
        assert!(ConnInfo::from_config(&PgConfig::new("mysql://u@h/d", "cdc")).is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("programs"), "\"programs\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
