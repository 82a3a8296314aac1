//! The Airtable destination: every committed change to a mapped table, and every outbox
//! intent, becomes the right Airtable write — exactly once in effect.
//!
//! - Idempotent: creates and updates are performUpsert on the merge field (the row's pg id);
//!   record ids from responses go to airtable_id_map; deletes of records already gone succeed.
//! - Coalesced: changes to one row between flushes become one write of its latest values;
//!   an insert deleted before the flush writes nothing. Unchanged TOAST columns are left out.
//! - Ordered: parents before children (the mapping's order), so links always resolve; deletes
//!   children first.
//! - Nothing lost: a rejected batch is bisected down to the rows Airtable refuses, which go to
//!   sync_dead_letter with the payload and the error; the rest syncs and the stream moves on.
//!
//! In the order the data flows: [`intake`] (events and outbox intents become pending writes,
//! coalesced per row), [`flush`] (everything pending goes out), [`records`] (rows become
//! records, links resolved), [`writes`] (batches sent, deletes, dead letters), [`reconcile`]
//! (Airtable made equal to Postgres); [`backfill`] runs backfill chunks between their
//! watermarks; [`validate`] checks the mapping at start and [`store`] holds the sink's SQL.

mod backfill;
mod flush;
mod intake;
mod reconcile;
mod records;
mod store;
mod validate;
mod writes;

use crate::airtable::{cells, AirtableClient, AirtableConfig, AirtableError, Lane};
pub use store::Store;

use records::Outgoing;

use super::{Destination, DestinationError, ErrorKind, Poison};
use crate::postgres::dead_letter::{DeadLetter, Direction};
use crate::replication::{Event, Lsn, Op, RowChange, Value as PgValue};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use indexmap::IndexMap;
use schema::mapping::{MappedTable, Mapping, TableId};
use serde_json::{json, Map, Value};
use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::Arc,
    time::Instant,
};
use uuid::Uuid;

/// What is pending for one row.
#[derive(Debug, Clone)]
enum Pending {
    Upsert {
        /// Latest values of outbound columns (JSON), unchanged TOAST columns absent.
        fields: Map<String, Value>,
        /// Every outbound column is present (an insert, or an update without unchanged TOAST).
        complete: bool,
        /// The row was inserted in this window: a delete cancels it without a write, unless
        /// the insert may already have reached Airtable in an earlier session.
        created_here: bool,
        /// Derived fields (program progress) to write with the row.
        derived: bool,
        /// Dead letters this write resolves when it succeeds (replays).
        replays: Vec<i64>,
        since: DateTime<Utc>,
    },
    Delete {
        replays: Vec<i64>,
        since: DateTime<Utc>,
    },
}

impl Pending {
    /// An upsert whose values are read from Postgres when it is written (resyncs, replays,
    /// parents written ahead of their children).
    fn reread(since: DateTime<Utc>, replays: Vec<i64>) -> Self {
        Pending::Upsert {
            fields: Map::new(),
            complete: false,
            created_here: false,
            derived: false,
            replays,
            since,
        }
    }

    /// Only the row's derived fields are new (read at flush, with the row when Airtable may
    /// not have it yet).
    fn derived_only(since: DateTime<Utc>) -> Self {
        Pending::Upsert {
            fields: Map::new(),
            complete: false,
            created_here: false,
            derived: true,
            replays: Vec::new(),
            since,
        }
    }
}

pub struct AirtableDestination {
    client: Arc<AirtableClient>,
    store: Store,
    mapping: Arc<Mapping>,
    config: AirtableConfig,
    pending: IndexMap<(TableId, Uuid), Pending>,
    /// Whole-table resyncs requested through the outbox (older tooling): queued as backfill
    /// jobs at the next flush.
    resync_tables: Vec<TableId>,
    backfill: backfill::Backfiller,
    /// (source table, its column naming the row, described table): a change to a source row
    /// moves the derived fields of the rows it names (program progress).
    derived_sources: Vec<(TableId, String, TableId)>,
    /// Dead letters to replay (through the outbox, so in stream order).
    replay_queue: Vec<i64>,
    outbox_done: Vec<i64>,
    first_pending: Option<Instant>,
    tx_time: DateTime<Utc>,
    /// Commit LSN of the transaction being handed (from Begin).
    tx_final: Lsn,
    /// Highest commit LSN whose changes may have been written to Airtable, by this session or
    /// an earlier one (persisted before each flush writes; None until read). Not a resume
    /// position — the slot is the only checkpoint — it only tells whether a redelivered
    /// change may already be in Airtable.
    possibly_written: Option<Lsn>,
    /// Highest commit LSN of the changes pending now.
    pending_final: Lsn,
    handed: Lsn,
    acked: Lsn,
    /// When the next reconcile is due.
    reconcile_at: Option<Instant>,
    /// The next reconcile is the whole one (after an unclean stop); otherwise the periodic
    /// reconcile is sampled.
    reconcile_full: bool,
    /// The first transaction of this session was seen (to detect an unclean stop).
    started: bool,
    /// After an unclean stop nothing is written before this: writes the dead process had in
    /// flight land first, so none of them can overwrite a newer one.
    fence_until: Option<Instant>,
    /// Numbers batches for the logs.
    batches: std::sync::atomic::AtomicU64,
    /// Some outbound dead letter may be pending (refreshed at every flush).
    dead_letters_pending: std::sync::atomic::AtomicBool,
    /// Read the base's schema when leading starts (`cdc run`), for this inbound side too.
    base_check: Option<Option<Arc<crate::inbound::Inbound>>>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, DestinationError>> + Send + 'a>>;

impl AirtableDestination {
    /// The sink over `client` (shared with the inbound side: one budget, one connection
    /// pool to Airtable).
    pub fn new(client: Arc<AirtableClient>, mapping: Arc<Mapping>, pool: sqlx::PgPool) -> Self {
        let config = client.config().clone();
        let reconcile_at = config.reconcile_interval.map(|i| Instant::now() + i);
        let mut derived_sources = Vec::new();
        for ti in mapping.table_ids().filter(|ti| !mapping.tables[*ti].derived.is_empty()) {
            let Some(d) = schema::registry::derivation_of(mapping.tables[ti].table.name) else {
                continue;
            };
            for (table, column) in d.sources {
                if let Some(source) = mapping.table_id(table) {
                    derived_sources.push((source, (*column).to_owned(), ti));
                }
            }
        }
        Self {
            client,
            store: Store::new(pool),
            mapping,
            config,
            pending: IndexMap::new(),
            resync_tables: Vec::new(),
            backfill: backfill::Backfiller::default(),
            derived_sources,
            replay_queue: Vec::new(),
            outbox_done: Vec::new(),
            first_pending: None,
            tx_time: Utc::now(),
            tx_final: Lsn::ZERO,
            possibly_written: None,
            pending_final: Lsn::ZERO,
            handed: Lsn::ZERO,
            acked: Lsn::ZERO,
            reconcile_at,
            reconcile_full: false,
            started: false,
            fence_until: None,
            batches: std::sync::atomic::AtomicU64::new(0),
            dead_letters_pending: std::sync::atomic::AtomicBool::new(true),
            base_check: None,
        }
    }

    /// When leading starts, read the base's schema once: keep Airtable's ids, check the
    /// mapping against it (refusing the lead when it does not fit), and hand it to `inbound`.
    pub fn check_base_on_lead(&mut self, inbound: Option<Arc<crate::inbound::Inbound>>) {
        self.base_check = Some(inbound);
    }

    pub fn client(&self) -> &Arc<AirtableClient> {
        &self.client
    }

    fn table_index(&self, name: &str) -> Option<TableId> {
        self.mapping.table_id(name)
    }

    fn mapped(&self, ti: TableId) -> &MappedTable {
        &self.mapping.tables[ti]
    }

    /// Whether the transaction being handed may have been written before (a redelivery).
    fn redelivered(&self) -> bool {
        self.possibly_written.is_some_and(|w| self.tx_final <= w)
    }
}

impl AirtableDestination {
    fn due(&self) -> bool {
        self.backfill.flush_now
            || self.pending.len() >= self.config.max_pending_rows
            || self.first_pending.is_some_and(|t| t.elapsed() >= self.config.flush_window)
    }

    /// Nothing waits for a flush: no row, intent, replay or landed backfill chunk.
    fn idle(&self) -> bool {
        self.pending.is_empty()
            && self.resync_tables.is_empty()
            && self.replay_queue.is_empty()
            && self.outbox_done.is_empty()
            && !self.backfill.unsaved()
    }
}

impl AirtableDestination {
    /// After a failure the stream hands everything unacknowledged again: drop what this
    /// session had pending (a flush may have taken part of it) and forget what was handed,
    /// so nothing is acknowledged that did not reach Airtable.
    fn abandon(&mut self) {
        self.pending.clear();
        self.resync_tables.clear();
        self.replay_queue.clear();
        self.outbox_done.clear();
        self.backfill.abandon();
        self.first_pending = None;
        self.pending_final = Lsn::ZERO;
        self.handed = self.acked;
    }

    async fn handle_event(&mut self, event: Event) -> Result<(), DestinationError> {
        if self.possibly_written.is_none() {
            self.possibly_written = Some(self.store.possibly_written().await?);
        }
        match event {
            Event::Begin { commit_time, final_lsn, .. } => {
                self.tx_time = commit_time;
                self.tx_final = final_lsn;
                if !self.started {
                    self.started = true;
                    if self.redelivered() {
                        // An unclean stop: a write the dead process had in flight may land
                        // after this session handled that row. Reconcile once they are in.
                        // Counted from the takeover (the predecessor stopped about then),
                        // so the successor's lease and this fence run at once.
                        let stopped = self
                            .client
                            .fence()
                            .leading_since()
                            .map_or_else(Instant::now, |t| t.into_std());
                        let at = stopped + self.config.reconcile_delay;
                        tracing::info!(delay = ?self.config.reconcile_delay, "restarted after an unclean stop: writing resumes after the grace period, then a reconcile");
                        self.fence_until = Some(at);
                        self.reconcile_full = true;
                        self.reconcile_at = Some(self.reconcile_at.map_or(at, |r| r.min(at)));
                        self.store.set_reconcile_owed(true).await?;
                    } else if self.store.reconcile_owed().await? {
                        // The previous leader stepped down before its whole reconcile ended.
                        tracing::info!("a whole reconcile is owed: running it now");
                        self.reconcile_full = true;
                        self.reconcile_at = Some(Instant::now());
                    }
                }
            }
            Event::Change(c) => self.on_change(c)?,
            Event::Truncate { relations, .. } => {
                let tables: Vec<TableId> =
                    relations.iter().filter_map(|r| self.table_index(&r.name)).collect();
                for ti in &tables {
                    self.truncated(*ti);
                }
                if !tables.is_empty() {
                    // Everything before the truncate goes first.
                    self.flush_all().await?;
                    for ti in tables {
                        self.truncate(ti).await?;
                    }
                }
            }
            Event::Message { transactional, lsn, prefix, content } => {
                self.on_message(&prefix, &content);
                if !transactional {
                    self.handed = self.handed.max(lsn);
                }
            }
            Event::Commit { end_lsn, .. } => {
                self.handed = self.handed.max(end_lsn);
                if self.idle() {
                    // Nothing of it needs Airtable (e.g. only Airtable-owned columns changed).
                    self.acked = self.acked.max(end_lsn);
                }
            }
        }
        if self.due() {
            self.flush_all().await?;
            self.backfill_step().await?;
        }
        Ok(())
    }

    async fn flush_and_reconcile(&mut self) -> Result<(), DestinationError> {
        self.flush_all().await?;
        if self.reconcile_at.is_some_and(|at| Instant::now() >= at) {
            self.reconcile().await?;
        }
        self.backfill_step().await
    }
}

impl Destination for AirtableDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        let result = self.handle_event(event).await;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    async fn flush(&mut self) -> Result<(), DestinationError> {
        let result = self.flush_and_reconcile().await;
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn acknowledged(&self) -> Lsn {
        self.acked
    }

    fn mirrors_state(&self) -> bool {
        true
    }

    async fn start(&mut self) -> Result<(), DestinationError> {
        let Some(inbound) = self.base_check.clone() else { return Ok(()) };
        self.read_base(inbound.as_deref())
            .await
            .map_err(|e| DestinationError::new(ErrorKind::Fatal, e))
    }

    fn fence(&self) -> Option<Arc<crate::leadership::Fence>> {
        Some(self.client.fence().clone())
    }

    fn handover_gap(&self) -> std::time::Duration {
        crate::leadership::HANDOVER_GAP
    }

    /// An isolated change becomes one outbound dead letter (`ISOLATED_CHANGE`) of its table
    /// and row, where known; `cdc dlq replay` re-sends the row's current state.
    async fn isolate(&mut self, poison: Poison) -> Result<(), DestinationError> {
        let d = poison.dead_letter(super::Target::Airtable);
        self.store.dead_letter(&d).await?;
        self.dead_letters_pending.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
