//! Read-through for logins, over Postgres only: the API NOTIFYs `coach_user_lookup` with an
//! email Postgres lacks; the users lane looks it up in Airtable at top priority and upserts
//! the user (whose commit NOTIFYs `coach_user_synced`), or answers `coach_user_missing`.
//! The API waits a bounded time either way.

use sqlx::PgPool;
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
    let listening = schema::postgres::listen_forever(pool, &[LOOKUP_CHANNEL], |_, payload| {
        let email = payload.trim().to_lowercase();
        if !plausible(&email) {
            metrics::counter!("inbound_read_through_total", "outcome" => "invalid").increment(1);
        } else if lookups.try_send(Lookup { email, at: Instant::now() }).is_err() {
            metrics::counter!("inbound_read_through_total", "outcome" => "dropped").increment(1);
        }
    });
    tokio::select! {
        _ = listening => {}
        _ = super::stopped(&mut shutdown) => {}
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
