//! Destinations: where the stream hands committed changes.

pub mod airtable;
pub mod convex;
mod log;
#[cfg(any(test, feature = "test-support"))]
mod memory;
mod null;

pub use log::LogDestination;
#[cfg(any(test, feature = "test-support"))]
pub use memory::{MemoryDestination, MemoryLog};
pub use null::NullDestination;

use crate::replication::{Event, Lsn};
use std::future::Future;

/// Which destination a daemon writes. Each runs on its own slot; this scopes what is its own
/// in the shared tables: dead letters, backfill jobs, the remembered mapping shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Airtable,
    Convex,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Airtable => "airtable",
            Target::Convex => "convex",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Airtable, Self::Convex].into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the stream does about a destination's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Transient (Postgres or the destination unreachable, overloaded): the stream restarts
    /// its session after a backoff, and everything unacknowledged is handed again.
    Retry,
    /// The destination refuses the daemon itself (credentials, permissions, a base that is
    /// not there): nothing is dead-lettered and nothing confirmed; the stream pauses, reports
    /// not ready with this cause, and retries with backoff until it works again.
    Auth,
    /// This one change cannot be handled. Handed again a bounded number of times, then the
    /// stream isolates it ([`Destination::isolate`]) and goes on.
    BadChange,
    /// Nothing will work until an operator acts: the stream stops with the message.
    Fatal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Retry => "retry",
            ErrorKind::Auth => "auth",
            ErrorKind::BadChange => "bad_change",
            ErrorKind::Fatal => "fatal",
        }
    }
}

/// A destination's failure: its kind decides what the stream does.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DestinationError {
    pub kind: ErrorKind,
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DestinationError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None }
    }

    pub fn retry(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retry, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, message)
    }

    pub fn bad_change(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadChange, message)
    }

    pub fn with_source(mut self, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(e));
        self
    }
}

/// Postgres failing under a destination is transient: the session restarts.
impl From<sqlx::Error> for DestinationError {
    fn from(e: sqlx::Error) -> Self {
        DestinationError::retry(format!("postgres: {e}")).with_source(e)
    }
}

/// A change the stream gave up on: it failed the same way on every delivery, or could not be
/// decoded. What is known of it travels along.
#[derive(Debug, Clone)]
pub struct Poison {
    /// The table, when the change got that far.
    pub table: Option<String>,
    /// The row as decoded (JSON), or the raw message (hex) when decoding failed.
    pub payload: serde_json::Value,
    /// Commit LSN of its transaction, and its position in it (0-based).
    pub transaction: Lsn,
    pub ordinal: u64,
    pub attempts: u32,
    pub reason: String,
}

impl Poison {
    /// The dead letter (`ISOLATED_CHANGE`) of `destination` that records it, of its table and
    /// row where known; `cdc dlq replay` re-sends the row's current state.
    pub fn dead_letter(self, destination: Target) -> crate::postgres::dead_letter::DeadLetter {
        let pg_id = self.payload.get("id").and_then(|v| v.as_str()).and_then(|s| s.parse().ok());
        let message = format!(
            "the stream gave up on this change after {} deliveries (transaction {}, change {}): {}",
            self.attempts, self.transaction, self.ordinal, self.reason
        );
        tracing::error!(%destination, table = ?self.table, ?pg_id, %message, "isolated a change");
        crate::postgres::dead_letter::DeadLetter {
            destination,
            direction: crate::postgres::dead_letter::Direction::Outbound,
            table: self.table,
            pg_id,
            record_id: None,
            operation: "change",
            payload: self.payload,
            code: "ISOLATED_CHANGE".into(),
            message,
            attempts: self.attempts as i32,
        }
    }
}

/// A sink for committed changes.
///
/// Contract:
/// - **At-least-once.** After a reconnect or a restart, delivery resumes at the slot's
///   confirmed position: everything not acknowledged is handed again, transactions already
///   applied but not acknowledged included. A `Begin` while a transaction is open abandons
///   the open one (its Commit never came; it will be handed again in full).
/// - **Commit order.** Transactions arrive in commit order, and a transaction's changes in the
///   order they were made, so the changes of one row arrive in commit order.
/// - **Streamed.** A transaction arrives event by event; a destination must not need a whole
///   transaction in memory (a single transaction may hold a million rows).
/// - **Backpressure.** `handle` may await; while it does, the stream reads nothing more from
///   the socket (the replication client keeps sending status updates meanwhile).
/// - **Acknowledgement.** `acknowledged()` is the highest LSN such that every event handed at
///   or before it is durable at the destination; it never decreases. The stream confirms
///   nothing beyond it to Postgres.
/// - **One owner.** A stream owns its destination; methods are never called concurrently.
pub trait Destination: Send {
    /// Takes one event, in stream order.
    fn handle(&mut self, event: Event)
        -> impl Future<Output = Result<(), DestinationError>> + Send;

    /// Makes everything handed so far durable. Called on every idle tick of the stream (so it
    /// must be cheap when there is nothing to do) and before shutdown; afterwards
    /// `acknowledged()` covers every Commit and standalone Message handed.
    fn flush(&mut self) -> impl Future<Output = Result<(), DestinationError>> + Send;

    /// See the contract.
    fn acknowledged(&self) -> Lsn;

    /// Registers, at 0, the metrics this destination records (called once the recorder is
    /// installed: metrics recorded before it are lost).
    fn register_metrics(&self) {}

    /// Changes when `acknowledged()` may have advanced outside `handle` and `flush` (writes
    /// that end in the background), so the stream confirms at once rather than at its next
    /// event or tick. None: it advances only within them.
    fn acknowledgements(&self) -> Option<tokio::sync::watch::Receiver<()>> {
        None
    }

    /// Whether this destination mirrors the tables' state, so rows that exist before the
    /// slot (which never stream) must be copied to it: the daemon then queues backfills when
    /// it creates the slot or the mapping gains a table or column, and the destination runs
    /// them (`crate::backfill`). False for destinations that only see the change stream.
    fn mirrors_state(&self) -> bool {
        false
    }

    /// Called once when this process starts leading, before the stream: reads what the
    /// destination needs to know first. An error refuses the lead with its message (the
    /// process stops, naming the fix).
    fn start(&mut self) -> impl Future<Output = Result<(), DestinationError>> + Send {
        async { Ok(()) }
    }

    /// The fence of the Airtable client this destination sends through, so the daemon's
    /// leadership governs it; None for destinations that send nowhere.
    fn fence(&self) -> Option<std::sync::Arc<crate::leadership::Fence>> {
        None
    }

    /// How long a new leader sends nothing after a clean handover: the destination's rate
    /// window, in which the predecessor's last requests still count. Zero where requests are
    /// not limited per window (a clean predecessor's requests have all ended).
    fn handover_gap(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Records a change the stream isolated (see [`Poison`]) durably, so it can be looked at
    /// and replayed; the stream then goes on with the rest of the transaction.
    fn isolate(
        &mut self,
        poison: Poison,
    ) -> impl Future<Output = Result<(), DestinationError>> + Send;
}
