use super::{Destination, DestinationError, Poison};
use crate::replication::{Event, Lsn};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// Discards everything and acknowledges each commit at once (benchmarks: the cost of the
/// stream alone). The counters are shared, so a caller can watch them while it streams.
#[derive(Debug, Default)]
pub struct NullDestination {
    pub events: Arc<AtomicU64>,
    pub changes: Arc<AtomicU64>,
    acked: Lsn,
}

impl Destination for NullDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        self.events.fetch_add(1, Ordering::Relaxed);
        match event {
            Event::Change(_) => {
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
            Event::Commit { end_lsn, .. } => self.acked = self.acked.max(end_lsn),
            Event::Message { transactional: false, lsn, .. } => self.acked = self.acked.max(lsn),
            _ => {}
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DestinationError> {
        Ok(())
    }

    fn acknowledged(&self) -> Lsn {
        self.acked
    }

    async fn isolate(&mut self, poison: Poison) -> Result<(), DestinationError> {
        tracing::warn!(table = ?poison.table, reason = %poison.reason, "isolated a change (discarded)");
        Ok(())
    }
}
