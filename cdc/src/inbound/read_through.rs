//! Read-through for logins, over Postgres only: the API NOTIFYs `coach_user_lookup` with an
//! email Postgres lacks; the users lane looks it up in Airtable at top priority and upserts
//! the user (whose commit NOTIFYs `coach_user_synced`), or answers `coach_user_missing`.
//! The API waits a bounded time either way.

use sqlx::{postgres::PgListener, PgPool};
use std::time::Duration;
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use schema::channels::{USER_LOOKUP as LOOKUP_CHANNEL, USER_MISSING as MISSING_CHANNEL};

/// One lookup request.
#[derive(Debug)]
pub struct Lookup {
    /// Lower-cased.
    pub email: String,
    pub at: Instant,
}

/// Whether `s` is worth looking up (the API checks too; this guards the budget).
fn plausible(s: &str) -> bool {
    s.len() <= 320 && s.contains('@') && !s.chars().any(char::is_control)
}

/// Listens for lookups and hands them to the users lane; when it is busy, the request is
/// dropped (counted): the login proceeds after its wait, and the users poll still runs.
pub async fn listen(
    pool: PgPool,
    lookups: mpsc::Sender<Lookup>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "read-through listener cannot connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(e) = listener.listen(LOOKUP_CHANNEL).await {
            tracing::warn!(error = %e, "cannot LISTEN for read-through lookups; retrying");
            continue;
        }
        backoff = Duration::from_millis(200);
        loop {
            let n = tokio::select! {
                n = listener.recv() => n,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match n {
                Ok(n) => {
                    let email = n.payload().trim().to_lowercase();
                    if !plausible(&email) {
                        metrics::counter!("inbound_read_through_total", "outcome" => "invalid")
                            .increment(1);
                        continue;
                    }
                    if lookups.try_send(Lookup { email, at: Instant::now() }).is_err() {
                        metrics::counter!("inbound_read_through_total", "outcome" => "dropped")
                            .increment(1);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "read-through listener lost its connection");
                    break;
                }
            }
        }
    }
}

/// Tells waiting logins Airtable has no such user (or could not say).
pub async fn answer_missing(pool: &PgPool, email: &str) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(MISSING_CHANNEL)
        .bind(email)
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "cannot answer a read-through lookup");
    }
}
