//! Day-one commands: `cdc init` (a database from nothing: migrations, the logins, the
//! publication) and `cdc admin invite` (the first coach or admin's password).

use crate::{
    config::{load_mapping, CdcConfig},
    postgres::{
        logins::{self, Login, LoginChange},
        publication,
    },
};
use anyhow::{bail, Context};
use clap::Subcommand;
use schema::{
    channels::{USER_LOOKUP, USER_MISSING, USER_SYNCED},
    invitations::{self, Invitee},
};
use secrecy::SecretString;
use sqlx::postgres::PgListener;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Print a one-time invitation code for a user Postgres has (by email): with it and
    /// their email the user sets a first password (`POST /api/auth/set-password`).
    Invite {
        email: String,
        /// How long the code works, in hours (at most 720).
        #[arg(long, default_value_t = 72)]
        valid_hours: u32,
        /// When Postgres lacks the email, how long to wait for `cdc run` to fetch it from
        /// Airtable (the login read-through), in seconds; 0 = do not ask.
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
}

/// The logins `cdc init` makes, from API_DB_USER/API_DB_PASSWORD and
/// CDC_DB_USER/CDC_DB_PASSWORD; a pair whose password is unset is skipped.
fn logins_from_env() -> Vec<Login> {
    let login = |user: &str, default: &str, password: &str, group, replication| {
        schema::env::var(password).map(|p| Login {
            name: schema::env::var(user).unwrap_or_else(|| default.into()),
            password: SecretString::from(p),
            group,
            replication,
        })
    };
    [
        login("API_DB_USER", "coach_api_login", "API_DB_PASSWORD", "coach_api", false),
        login("CDC_DB_USER", "coach_sync_login", "CDC_DB_PASSWORD", "coach_sync", true),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `cdc init`, as the database owner: migrations, then each process's login, then the
/// publication. Safe to run on every deploy.
pub async fn init() -> anyhow::Result<()> {
    let config = CdcConfig::from_env()?;
    super::migrate::run(&config.postgres, false).await?;
    let client = super::sql(&config).await?;
    let logins = logins_from_env();
    if logins.is_empty() {
        println!("no API_DB_PASSWORD or CDC_DB_PASSWORD: no login created");
    }
    for login in &logins {
        let verb = match logins::ensure(&client, login).await? {
            LoginChange::Created => "created",
            LoginChange::Updated => "updated",
        };
        println!(
            "{verb} login {} in {}{}",
            login.name,
            login.group,
            if login.replication { " (REPLICATION)" } else { "" }
        );
    }
    let mapping = load_mapping().map_err(anyhow::Error::msg)?;
    let change =
        publication::sync(&client, &config.publication, &mapping.published_tables()).await?;
    println!("{}", change.describe(&config.publication));
    Ok(())
}

pub async fn run(action: AdminAction) -> anyhow::Result<()> {
    match action {
        AdminAction::Invite { email, valid_hours, wait } => {
            invite(&email, valid_hours, Duration::from_secs(wait)).await
        }
    }
}

async fn invite(email: &str, valid_hours: u32, wait: Duration) -> anyhow::Result<()> {
    if valid_hours == 0 || valid_hours > 720 {
        bail!("--valid-hours must be between 1 and 720");
    }
    let config = CdcConfig::from_env()?;
    let pool = schema::postgres::connect(&config.postgres)
        .await
        .with_context(|| format!("cannot connect to {}", config.postgres.redacted_url()))?;
    let valid = chrono::Duration::hours(i64::from(valid_hours));
    let email = email.trim().to_lowercase();
    let mut issued = issue(&pool, &email, valid).await?;
    if issued.is_none() && !wait.is_zero() {
        eprintln!("{email} is not in Postgres; asking `cdc run` to fetch it from Airtable…");
        if read_through(&pool, &email, wait).await? {
            issued = issue(&pool, &email, valid).await?;
        }
    }
    let Some(issued) = issued else {
        bail!(
            "no user with email {email} in Postgres. Users come from Airtable: add them to the \
             users table there, and with `cdc run` up they reach Postgres within seconds (a \
             login or this command asks for them at once; otherwise the next users poll, \
             SYNC_POLL_USERS_MS). Then run this again."
        );
    };
    println!("invitation for {email} (user {})", issued.user_id);
    println!("code     {}", issued.code);
    println!("expires  {}", issued.expires_at.to_rfc3339());
    println!("The user sets a password with POST /api/auth/set-password {{\"email\", \"code\", \"password\"}}; the code works once.");
    Ok(())
}

async fn issue(
    pool: &sqlx::PgPool,
    email: &str,
    valid: chrono::Duration,
) -> anyhow::Result<Option<invitations::Issued>> {
    invitations::issue(pool, Invitee::Email(email), None, valid).await.map_err(|e| {
        let denied = matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42501"));
        if denied {
            anyhow::anyhow!("{e}: run `cdc admin invite` as the database owner (the role that runs `cdc migrate`) or a login in coach_api")
        } else {
            e.into()
        }
    })
}

/// Asks the daemon for `email`, as a login does; true when it wrote the user in time.
async fn read_through(pool: &sqlx::PgPool, email: &str, wait: Duration) -> anyhow::Result<bool> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([USER_SYNCED, USER_MISSING]).await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(USER_LOOKUP).bind(email).execute(pool).await?;
    let answer = async {
        loop {
            let n = listener.recv().await?;
            if n.payload() == email {
                return Ok::<_, sqlx::Error>(n.channel() == USER_SYNCED);
            }
        }
    };
    Ok(tokio::time::timeout(wait, answer).await.unwrap_or(Ok(false))?)
}
