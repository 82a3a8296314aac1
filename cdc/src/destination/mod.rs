//! Destinations: where the stream hands committed changes.

pub mod airtable;
mod log;
mod memory;
mod null;

pub use log::LogDestination;
pub use memory::{MemoryDestination, MemoryLog};
pub use null::NullDestination;

use crate::replication::{Event, Lsn};
use std::future::Future;

/// A destination's failure. The stream restarts its session from the slot's confirmed
/// position, so everything not acknowledged is delivered again.
#[derive(Debug, thiserror::Error)]
#[error("destination failed: {0}")]
pub struct DestinationError(pub String);

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
}
