use super::{Destination, DestinationError, Poison};
use crate::replication::{Event, Lsn};
use std::sync::{Arc, Mutex};

/// What a [`MemoryDestination`] received: every event and every acknowledged commit.
#[derive(Debug, Default)]
pub struct MemoryLog {
    pub events: Vec<Event>,
    /// Commits in acknowledgement order (their end LSNs).
    pub acknowledged: Vec<Lsn>,
    /// Changes the stream isolated.
    pub isolated: Vec<Poison>,
}

/// Keeps every event in memory, for tests. Acknowledges each commit when handed, unless told
/// to fail: `fail_at` makes the Nth `handle` call (1-based, counted across sessions) fail
/// once, before recording the event; `poisoned_by` makes every change whose row (as JSON)
/// contains a text fail as a bad change, on every delivery.
#[derive(Debug, Clone, Default)]
pub struct MemoryDestination {
    pub log: Arc<Mutex<MemoryLog>>,
    fail_at: Option<u64>,
    poison: Option<String>,
    calls: u64,
    acked: Lsn,
}

impl MemoryDestination {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn failing_at(call: u64) -> Self {
        Self { fail_at: Some(call), ..Self::default() }
    }

    pub fn poisoned_by(text: impl Into<String>) -> Self {
        Self { poison: Some(text.into()), ..Self::default() }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, MemoryLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Destination for MemoryDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        self.calls += 1;
        if self.fail_at == Some(self.calls) {
            return Err(DestinationError::retry(format!(
                "injected failure at call {}",
                self.calls
            )));
        }
        if let (Some(text), Event::Change(c)) = (&self.poison, &event) {
            if c.new.as_ref().is_some_and(|r| {
                serde_json::Value::Object(r.to_json()).to_string().contains(text.as_str())
            }) {
                return Err(DestinationError::bad_change(format!("poisoned by {text:?}")));
            }
        }
        let ack = match &event {
            Event::Commit { end_lsn, .. } => Some(*end_lsn),
            Event::Message { transactional: false, lsn, .. } => Some(*lsn),
            _ => None,
        };
        {
            let mut log = self.log();
            log.events.push(event);
            if let Some(lsn) = ack {
                log.acknowledged.push(lsn);
            }
        }
        if let Some(lsn) = ack {
            self.acked = self.acked.max(lsn);
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
        self.log().isolated.push(poison);
        Ok(())
    }
}
