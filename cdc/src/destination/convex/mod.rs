//! The Convex mirror: every committed change to a mirrored table becomes a mirror:apply
//! change carrying its commit LSN as its version, from the same kind of stream as Airtable's
//! (its own slot), so no write path can forget it.
//!
//! - Idempotent and ordered by construction: mirror:apply is a compare-and-set on version,
//!   so a redelivery after a crash, a retry whose answer was lost, or two calls in flight at
//!   once never regress a document. No fence after an unclean stop is needed.
//! - Coalesced: changes to one row between flushes become one change, its latest.
//! - Ordered for readers: parents' upserts first, children's deletes first.
//! - Nothing lost: a refused call is bisected down to the changes Convex refuses, which go to
//!   sync_dead_letter (destination convex) with the change and the error; the rest lands.
//!
//! In the order the data flows: [`intake`] (events become pending changes), [`writes`]
//! (a flush: calls, bisection, dead letters), [`backfill`] (rows from before the slot, in
//! the mirror's order, throttled).

mod backfill;
mod intake;
mod writes;

use super::{Destination, DestinationError, ErrorKind, Poison, Target};
use crate::{
    convex::{rows::RowReader, ConvexClient, ConvexConfig},
    postgres::dead_letter::{DeadLetter, Direction},
    replication::{Event, Lsn},
};
use indexmap::IndexMap;
use schema::mirror::Mirror;
use serde_json::{Map, Value};
use std::{sync::Arc, time::Instant};
use uuid::Uuid;

/// A mirrored table's position in the mirror (parents first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TableAt(usize);

/// What is pending for one row.
#[derive(Debug, Clone)]
enum Pending {
    /// Its whole document, as of `version`.
    Upsert {
        version: u64,
        doc: Map<String, Value>,
        replays: Vec<i64>,
    },
    Delete {
        version: u64,
        replays: Vec<i64>,
    },
    /// Read the row when flushing and send it at `version` (a delete when it is gone): an
    /// update without its unchanged TOAST values, a resync, a replay.
    Reread {
        version: u64,
        replays: Vec<i64>,
    },
}

impl Pending {
    fn replays(&mut self) -> &mut Vec<i64> {
        match self {
            Pending::Upsert { replays, .. }
            | Pending::Delete { replays, .. }
            | Pending::Reread { replays, .. } => replays,
        }
    }
}

pub struct ConvexDestination {
    client: Arc<ConvexClient>,
    reader: Arc<RowReader>,
    mirror: Arc<Mirror>,
    config: ConvexConfig,
    pending: IndexMap<(TableAt, Uuid), Pending>,
    /// Dead letters to replay, with the version of the intent that asked.
    replay_queue: Vec<(i64, u64)>,
    /// Whole tables to copy again (resync intents of older tooling): queued as backfills.
    resync_tables: Vec<String>,
    backfill: backfill::Backfiller,
    first_pending: Option<Instant>,
    /// Commit LSN of the transaction being handed: its changes' version.
    tx_version: u64,
    handed: Lsn,
    acked: Lsn,
    /// What sends, for the flushes in flight too.
    writer: writes::Writer,
    in_flight: std::collections::VecDeque<writes::InFlight>,
    /// The daemon's parity check, while this process leads.
    parity: Option<crate::run::AbortOnDrop>,
}

impl ConvexDestination {
    pub fn new(client: Arc<ConvexClient>, mirror: Arc<Mirror>, pool: sqlx::PgPool) -> Self {
        let config = client.config().clone();
        let reader = Arc::new(RowReader::new(pool));
        let writer = writes::Writer {
            client: client.clone(),
            reader: reader.clone(),
            mirror: mirror.clone(),
            config: config.clone(),
            dead_letters: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            written: Arc::new(tokio::sync::watch::Sender::new(())),
        };
        Self {
            client,
            reader,
            mirror,
            config,
            pending: IndexMap::new(),
            replay_queue: Vec::new(),
            resync_tables: Vec::new(),
            backfill: backfill::Backfiller::default(),
            first_pending: None,
            tx_version: 0,
            handed: Lsn::ZERO,
            acked: Lsn::ZERO,
            writer,
            in_flight: std::collections::VecDeque::new(),
            parity: None,
        }
    }

    fn name(&self, t: TableAt) -> &'static str {
        self.mirror.tables[t.0].table.name
    }

    fn due(&self) -> bool {
        self.pending.len() >= self.config.max_pending_rows
            || self.first_pending.is_some_and(|t| t.elapsed() >= self.config.flush_window)
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.replay_queue.is_empty()
            && self.resync_tables.is_empty()
            && self.in_flight.is_empty()
    }

    /// After a failure the stream hands everything unacknowledged again.
    fn abandon(&mut self) {
        self.pending.clear();
        self.replay_queue.clear();
        self.resync_tables.clear();
        self.first_pending = None;
        // Unfinished flushes are aborted (what they carried is handed again); what the
        // written ones carried stays acknowledged.
        self.acked = Destination::acknowledged(self);
        self.in_flight.clear();
        self.handed = self.acked;
    }
}

impl Destination for ConvexDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        let result = async {
            self.on_event(event).await?;
            if self.due() {
                self.flush_start().await?;
                // Under a steady load the stream is never idle: chunks go between flushes.
                self.backfill_step().await?;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    async fn flush(&mut self) -> Result<(), DestinationError> {
        let result = async {
            self.flush_all().await?;
            self.backfill_step().await
        }
        .await;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    /// With the flushes in flight that were written, in order.
    fn acknowledged(&self) -> Lsn {
        self.in_flight.iter().map_while(writes::InFlight::written_upto).fold(self.acked, Lsn::max)
    }

    fn register_metrics(&self) {
        for name in ["mirror_coalesced_changes_total", "mirror_parity_checks_total"] {
            metrics::counter!(name).absolute(0);
        }
        metrics::gauge!("mirror_dlq_pending").set(0.0);
        metrics::gauge!("mirror_backfill_jobs_open").set(0.0);
        for function in ["mirror:apply", "mirror:snapshot"] {
            for result in ["success", "refused", "unauthorized", "retry"] {
                metrics::counter!("mirror_calls_total", "function" => function, "result" => result)
                    .absolute(0);
            }
        }
        for t in &self.mirror.tables {
            let table = t.table.name;
            for outcome in ["applied", "stale", "failed"] {
                metrics::counter!("mirror_writes_total", "table" => table, "outcome" => outcome)
                    .absolute(0);
            }
            metrics::counter!("mirror_dead_letters_total", "table" => table).absolute(0);
            metrics::counter!("mirror_backfill_rows_total", "table" => table).absolute(0);
            metrics::gauge!("mirror_parity_drift", "table" => table).set(0.0);
            metrics::gauge!("mirror_pending_retries", "table" => table).set(0.0);
        }
    }

    fn acknowledgements(&self) -> Option<tokio::sync::watch::Receiver<()>> {
        Some(self.writer.written.subscribe())
    }

    fn mirrors_state(&self) -> bool {
        true
    }

    async fn start(&mut self) -> Result<(), DestinationError> {
        // One call that changes nothing: a wrong URL, key or an undeployed module refuses
        // the lead, naming the fix.
        self.client
            .apply(&[])
            .await
            .map_err(|e| DestinationError::new(ErrorKind::Fatal, e.to_string()))?;
        if let Some(every) = self.config.parity_interval {
            let (client, reader, mirror) =
                (self.client.clone(), self.reader.clone(), self.mirror.clone());
            let sample = self.config.parity_sample;
            self.parity = Some(crate::run::AbortOnDrop(tokio::spawn(
                crate::convex::verify::periodically(client, reader, mirror, every, sample),
            )));
        }
        Ok(())
    }

    fn fence(&self) -> Option<Arc<crate::leadership::Fence>> {
        Some(self.client.fence().clone())
    }

    /// An isolated change becomes one convex dead letter (`ISOLATED_CHANGE`); `cdc dlq
    /// replay` sends the row's current state.
    async fn isolate(&mut self, poison: Poison) -> Result<(), DestinationError> {
        let d = poison.dead_letter(Target::Convex);
        crate::postgres::dead_letter::add(self.reader.pool(), &d).await?;
        self.writer.dead_letters.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
