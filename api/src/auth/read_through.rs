//! Read-through for logins: an email Postgres lacks may exist in Airtable. The API asks the
//! daemon over Postgres (NOTIFY), waits a bounded time for its answer (a NOTIFY at the
//! user's commit, or "missing"), and then proceeds. The API itself never calls Airtable.

use schema::{
    channels::{USER_LOOKUP, USER_MISSING, USER_SYNCED},
    postgres::PgPool,
};
use std::time::Duration;
use tokio::sync::broadcast;

/// How a read-through ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The daemon wrote the user.
    Synced,
    /// The daemon says Airtable has no such user.
    Missing,
    /// No answer in time (the daemon is down or slow): proceed with what Postgres has.
    TimedOut,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Missing => "missing",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// One shared listener; each waiting login subscribes to its answers.
pub struct ReadThrough {
    wait: Duration,
    answers: broadcast::Sender<(String, bool)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReadThrough {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReadThrough {
    /// Starts the listener (it reconnects on its own).
    pub fn start(pool: PgPool, wait: Duration) -> Self {
        let (answers, _) = broadcast::channel(1024);
        let task = tokio::spawn(listen(pool, answers.clone()));
        Self { wait, answers, task }
    }

    /// Asks for `email` and waits for the answer, at most the configured time.
    pub async fn ask(&self, pool: &PgPool, email: &str) -> Outcome {
        let email = email.trim().to_lowercase();
        // Subscribe before asking, so the answer cannot slip past.
        let mut rx = self.answers.subscribe();
        let asked = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(USER_LOOKUP)
            .bind(&email)
            .execute(pool)
            .await;
        let outcome = if asked.is_err() {
            Outcome::TimedOut
        } else {
            let wait = async {
                loop {
                    match rx.recv().await {
                        Ok((e, synced)) if e == email => {
                            return if synced { Outcome::Synced } else { Outcome::Missing }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return Outcome::TimedOut,
                    }
                }
            };
            tokio::time::timeout(self.wait, wait).await.unwrap_or(Outcome::TimedOut)
        };
        metrics::counter!("api_read_through_total", "outcome" => outcome.label()).increment(1);
        outcome
    }
}

async fn listen(pool: PgPool, answers: broadcast::Sender<(String, bool)>) {
    schema::postgres::listen_forever(pool, &[USER_SYNCED, USER_MISSING], |channel, payload| {
        let _ = answers.send((payload.to_owned(), channel == USER_SYNCED));
    })
    .await
}
