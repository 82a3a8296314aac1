use super::{Destination, DestinationError};
use crate::replication::{Event, Lsn};

/// Discards everything and acknowledges each commit at once (benchmarks: the cost of the
/// stream alone).
#[derive(Debug, Default)]
pub struct NullDestination {
    pub events: u64,
    pub changes: u64,
    acked: Lsn,
}

impl Destination for NullDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        self.events += 1;
        match event {
            Event::Change(_) => self.changes += 1,
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
}
