//! The LOGIN users each process runs as, created from the environment (`cdc init`): one in
//! `coach_api` for the API, one with REPLICATION in `coach_sync` for the daemon. Idempotent:
//! run again, it re-sets the passwords (a rotation) and the memberships.

use super::{quote_ident, SqlError};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::Client;

/// One login to make.
pub struct Login {
    pub name: String,
    pub password: SecretString,
    /// The group role it is a member of (`coach_api`, `coach_sync`).
    pub group: &'static str,
    /// REPLICATION (not inherited from the group, so set on the login itself).
    pub replication: bool,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("replication", &self.replication)
            .finish_non_exhaustive()
    }
}

/// What `ensure` did to one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginChange {
    Created,
    /// It existed: password, attributes and membership set again.
    Updated,
}

/// Why a login could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot create or alter role {name}: {source}; run `cdc init` as a role with CREATEROLE{}", if *replication { " that may grant REPLICATION (a superuser before PostgreSQL 16)" } else { "" })]
    NotAllowed { name: String, replication: bool, source: SqlError },
}

/// Creates `login` or brings it in line. The password travels as a SCRAM-SHA-256 verifier
/// computed here: the server (and its statement log) never sees it in the clear.
pub async fn ensure(client: &Client, login: &Login) -> Result<LoginChange, LoginError> {
    let verifier =
        postgres_protocol::password::scram_sha_256(login.password.expose_secret().as_bytes());
    let name = quote_ident(&login.name);
    let attributes = format!(
        "LOGIN {} PASSWORD {}",
        if login.replication { "REPLICATION" } else { "NOREPLICATION" },
        quote_literal(&verifier)
    );
    let not_allowed = |source: tokio_postgres::Error| LoginError::NotAllowed {
        name: login.name.clone(),
        replication: login.replication,
        source: source.into(),
    };
    // Create it; if it is there already (from an earlier run, or another one meanwhile),
    // set it again.
    let change = match client.batch_execute(&format!("CREATE ROLE {name} {attributes}")).await {
        Ok(()) => LoginChange::Created,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {
            client
                .batch_execute(&format!("ALTER ROLE {name} {attributes}"))
                .await
                .map_err(not_allowed)?;
            LoginChange::Updated
        }
        Err(e) => return Err(not_allowed(e)),
    };
    client
        .batch_execute(&format!("GRANT {} TO {name}", quote_ident(login.group)))
        .await
        .map_err(not_allowed)?;
    Ok(change)
}

/// A SQL string literal (standard_conforming_strings: only quotes are doubled).
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
