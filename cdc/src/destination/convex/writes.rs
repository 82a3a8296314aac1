//! A flush: everything pending goes out as mirror:apply calls, parents first, deletes
//! children first; a refused call is bisected down to the changes Convex refuses. A flush the
//! stream asks for when enough is pending runs in the background while the stream reads on
//! (at most [`MAX_IN_FLIGHT`] at once: versions make their order irrelevant); what it
//! carries is acknowledged when it ends.

use super::*;
use crate::convex::{ConvexError, Outcome, WireChange};
use futures::{stream, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};

/// Flushes on the wire at once (each at most `max_pending_rows` rows: memory stays bounded).
const MAX_IN_FLIGHT: usize = 2;

/// What sends: cheap to clone into a flush's task.
#[derive(Clone)]
pub(super) struct Writer {
    pub(super) client: Arc<ConvexClient>,
    pub(super) reader: Arc<RowReader>,
    pub(super) mirror: Arc<Mirror>,
    pub(super) config: ConvexConfig,
    /// Some convex dead letter may be pending (refreshed after every flush).
    pub(super) dead_letters: Arc<AtomicBool>,
    /// Raised when a flush in flight was written (`Destination::acknowledgements`).
    pub(super) written: Arc<tokio::sync::watch::Sender<()>>,
}

/// A flush in flight: what it acknowledges when it ends.
pub(super) struct InFlight {
    upto: Lsn,
    /// Set when every call of it succeeded: the stream may confirm `upto` before the next
    /// flush collects it (a quiet stream would otherwise wait for its idle flush).
    written: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), DestinationError>>,
}

impl InFlight {
    pub(super) fn written_upto(&self) -> Option<Lsn> {
        self.written.load(Ordering::Acquire).then_some(self.upto)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A change on its way: its table and row, and the change itself.
pub(super) struct Out {
    pub(super) at: TableAt,
    pub(super) id: Uuid,
    pub(super) wire: WireChange,
    /// The change encoded, once (filled when it is batched).
    pub(super) json: String,
}

impl Out {
    pub(super) fn new(at: TableAt, id: Uuid, wire: WireChange) -> Self {
        Self { at, id, wire, json: String::new() }
    }
}

impl ConvexDestination {
    /// Writes everything pending and waits for every flush in flight: afterwards everything
    /// handed so far is acknowledged.
    pub(super) async fn flush_all(&mut self) -> Result<(), DestinationError> {
        self.flush_start().await?;
        while !self.in_flight.is_empty() {
            self.await_front().await?;
        }
        self.acked = self.acked.max(self.handed);
        Ok(())
    }

    /// Acknowledges the flushes that ended, in order.
    pub(super) async fn collect_acks(&mut self) -> Result<(), DestinationError> {
        while self.in_flight.front().is_some_and(|f| f.task.is_finished()) {
            self.await_front().await?;
        }
        Ok(())
    }

    async fn await_front(&mut self) -> Result<(), DestinationError> {
        let Some(mut f) = self.in_flight.pop_front() else { return Ok(()) };
        let result = (&mut f.task).await;
        result.map_err(|e| DestinationError::retry(format!("a flush did not finish: {e}")))??;
        self.acked = self.acked.max(f.upto);
        Ok(())
    }

    /// Starts writing everything pending in the background.
    pub(super) async fn flush_start(&mut self) -> Result<(), DestinationError> {
        self.collect_acks().await?;
        let upto = self.handed;
        if self.pending.is_empty() && self.replay_queue.is_empty() && self.resync_tables.is_empty()
        {
            if self.in_flight.is_empty() {
                self.acked = self.acked.max(upto);
            }
            return Ok(());
        }
        self.take_replays().await?;
        self.queue_resyncs().await?;
        let pending = std::mem::take(&mut self.pending);
        let n = self.mirror.tables.len();
        let (mut upserts, mut deletes, mut rereads) =
            (vec![Vec::new(); n], vec![Vec::new(); n], vec![Vec::new(); n]);
        let mut replays = Vec::new();
        for ((at, id), p) in pending {
            match p {
                Pending::Upsert { version, doc, replays: r } => {
                    replays.extend(r);
                    upserts[at.0].push(WireChange::upsert(self.name(at), id, version, doc));
                }
                Pending::Delete { version, replays: r } => {
                    replays.extend(r);
                    deletes[at.0].push(WireChange::delete(self.name(at), id, version));
                }
                Pending::Reread { version, replays: r } => {
                    replays.extend(r);
                    rereads[at.0].push((id, version));
                }
            }
        }
        for (i, wanted) in rereads.into_iter().enumerate() {
            if wanted.is_empty() {
                continue;
            }
            let t = &self.mirror.tables[i];
            let ids: Vec<Uuid> = wanted.iter().map(|(id, _)| *id).collect();
            let rows: std::collections::HashMap<Uuid, Map<String, Value>> =
                self.reader.by_ids(t.table.name, &t.columns, &ids).await?.into_iter().collect();
            for (id, version) in wanted {
                // Gone since: its delete is at least this new.
                upserts[i].push(match rows.get(&id) {
                    Some(doc) => WireChange::upsert(t.table.name, id, version, doc.clone()),
                    None => WireChange::delete(t.table.name, id, version),
                });
            }
        }
        // A replayed dead letter resolves when its row is written (`send_table`), not when
        // it is refused again.
        if !replays.is_empty() {
            self.writer.dead_letters.store(true, Ordering::Relaxed);
        }
        let groups: Vec<(TableAt, Vec<Out>)> = upserts
            .into_iter()
            .enumerate()
            .chain(deletes.into_iter().enumerate().rev())
            .filter(|(_, changes)| !changes.is_empty())
            .map(|(i, changes)| {
                let at = TableAt(i);
                let outs = changes
                    .into_iter()
                    .map(|wire| Out::new(at, wire.id.parse().unwrap_or_default(), wire))
                    .collect();
                (at, outs)
            })
            .collect();
        self.first_pending = None;
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            self.await_front().await?;
        }
        let writer = self.writer.clone();
        let rows: usize = groups.iter().map(|(_, outs)| outs.len()).sum();
        tracing::debug!(rows, in_flight = self.in_flight.len(), upto = %upto, "flush started");
        let written = Arc::new(AtomicBool::new(false));
        let done = written.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            for (at, outs) in groups {
                writer.send_table(at, outs).await?;
            }
            writer.refresh_dead_letters().await;
            done.store(true, Ordering::Release);
            writer.written.send_replace(());
            tracing::debug!(rows, upto = %upto, ms = started.elapsed().as_millis() as u64, "flush ended");
            Ok(())
        });
        self.in_flight.push_back(InFlight { upto, written, task });
        Ok(())
    }
}

impl Writer {
    fn name(&self, at: TableAt) -> &'static str {
        self.mirror.tables[at.0].table.name
    }

    /// One table's changes in calls of at most `batch_changes` and `batch_bytes`, up to
    /// `concurrency` at once (versions make their order irrelevant).
    pub(super) async fn send_table(
        &self,
        at: TableAt,
        outs: Vec<Out>,
    ) -> Result<(), DestinationError> {
        let mut calls: Vec<Vec<Out>> = Vec::new();
        let mut bytes = 0;
        for mut o in outs {
            o.json = o.wire.encode();
            let b = o.json.len();
            let full = calls.last().is_none_or(|c| {
                c.len() >= self.config.batch_changes || bytes + b > self.config.batch_bytes
            });
            if full {
                calls.push(Vec::new());
                bytes = 0;
            }
            bytes += b;
            if let Some(c) = calls.last_mut() {
                c.push(o);
            }
        }
        let results: Vec<Result<Vec<Out>, DestinationError>> = stream::iter(calls)
            .map(|call| self.send_bisecting(call))
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let mut written = Vec::new();
        for r in results {
            written.extend(r?);
        }
        if self.dead_letters.load(Ordering::Relaxed) && !written.is_empty() {
            let ids: Vec<Uuid> = written.iter().map(|o| o.id).collect();
            crate::postgres::dead_letter::resolve_rows(
                self.reader.pool(),
                Target::Convex,
                self.name(at),
                &ids,
            )
            .await?;
        }
        Ok(())
    }

    /// Sends one call; a refused call is split in halves until each refused change is alone,
    /// and those become dead letters. Returns the changes Convex took.
    fn send_bisecting<'a>(
        &'a self,
        call: Vec<Out>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Out>, DestinationError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let Some(first) = call.first() else { return Ok(call) };
            let (at, table) = (first.at, self.name(first.at));
            let encoded: Vec<String> = call.iter().map(|o| o.json.clone()).collect();
            let started = Instant::now();
            let gauge = metrics::gauge!("mirror_pending_retries", "table" => table);
            gauge.increment(call.len() as f64);
            let result = self.client.apply_encoded(&encoded).await;
            gauge.decrement(call.len() as f64);
            metrics::histogram!("mirror_write_seconds", "table" => table)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(Outcome { applied, stale }) => {
                    metrics::counter!("mirror_writes_total", "table" => table, "outcome" => "applied").increment(applied);
                    metrics::counter!("mirror_writes_total", "table" => table, "outcome" => "stale").increment(stale);
                    Ok(call)
                }
                Err(ConvexError::Function { message }) if call.len() > 1 => {
                    tracing::info!(table, changes = call.len(), error = %message, "Convex refused a call: bisecting");
                    let mut call = call;
                    let back = call.split_off(call.len() / 2);
                    let mut ok = self.send_bisecting(call).await?;
                    ok.extend(self.send_bisecting(back).await?);
                    Ok(ok)
                }
                Err(e @ ConvexError::Function { .. }) => {
                    metrics::counter!("mirror_writes_total", "table" => table, "outcome" => "failed").increment(1);
                    self.dead_letter(at, &call[0], &e).await?;
                    Ok(Vec::new())
                }
                Err(e @ ConvexError::Unauthorized { .. }) => {
                    Err(DestinationError::auth(e.to_string()))
                }
                Err(e) => Err(DestinationError::retry(format!("Convex: {e}"))),
            }
        })
    }

    async fn dead_letter(
        &self,
        at: TableAt,
        o: &Out,
        e: &ConvexError,
    ) -> Result<(), DestinationError> {
        let table = self.name(at);
        tracing::error!(table, pg_id = %o.id, code = e.code(), error = %e, "Convex refused a change: dead-lettered");
        metrics::counter!("mirror_dead_letters_total", "table" => table).increment(1);
        let d = DeadLetter {
            destination: Target::Convex,
            direction: Direction::Outbound,
            table: Some(table.to_owned()),
            pg_id: Some(o.id),
            record_id: None,
            operation: o.wire.op,
            payload: serde_json::to_value(&o.wire).unwrap_or_default(),
            code: e.code().into(),
            message: e.to_string(),
            attempts: 1,
        };
        crate::postgres::dead_letter::add(self.reader.pool(), &d).await?;
        Ok(())
    }

    async fn refresh_dead_letters(&self) {
        let pending: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM sync_dead_letter WHERE status = 'pending' AND destination = 'convex'",
        )
        .fetch_one(self.reader.pool())
        .await;
        if let Ok(n) = pending {
            metrics::gauge!("mirror_dlq_pending").set(n as f64);
            self.dead_letters.store(n > 0, Ordering::Relaxed);
        }
    }
}

impl ConvexDestination {
    /// A truncate at `version`: every live document of the table is deleted at it.
    pub(super) async fn truncate(
        &mut self,
        at: TableAt,
        version: u64,
    ) -> Result<(), DestinationError> {
        let t = &self.mirror.tables[at.0];
        let (pg, convex) = (t.table.name, t.convex.clone());
        let mut cursor: Option<String> = None;
        let mut n = 0;
        loop {
            let page = self
                .client
                .snapshot(&convex, cursor.as_deref(), 1000)
                .await
                .map_err(|e| DestinationError::retry(format!("Convex: {e}")))?;
            let outs: Vec<Out> = page
                .page
                .iter()
                .filter(|d| !d.deleted)
                .filter_map(|d| d.id.parse().ok())
                .map(|id| Out::new(at, id, WireChange::delete(pg, id, version)))
                .collect();
            n += outs.len();
            self.writer.send_table(at, outs).await?;
            if page.is_done {
                break;
            }
            cursor = Some(page.continue_cursor);
        }
        tracing::info!(table = pg, documents = n, "a truncate deleted the table's documents");
        Ok(())
    }

    /// Replay intents: the dead letter's row is read again at the intent's version.
    async fn take_replays(&mut self) -> Result<(), DestinationError> {
        for (dl, version) in std::mem::take(&mut self.replay_queue) {
            let row: Option<(Option<String>, Option<Uuid>)> = sqlx::query_as(
                "SELECT table_name, pg_id FROM sync_dead_letter WHERE id = $1 AND destination = 'convex' AND direction = 'outbound' AND status = 'pending'",
            )
            .bind(dl)
            .fetch_optional(self.reader.pool())
            .await?;
            // None: another destination's, or not pending: not this daemon's to send.
            if let Some((Some(table), Some(id))) = row {
                match self.mirror.position(&table) {
                    Some(at) => {
                        self.pend((TableAt(at), id), Pending::Reread { version, replays: vec![dl] })
                    }
                    None => {
                        tracing::warn!(dead_letter = dl, %table, "cannot replay: table not mirrored")
                    }
                }
            }
        }
        Ok(())
    }

    async fn queue_resyncs(&mut self) -> Result<(), DestinationError> {
        let tables = std::mem::take(&mut self.resync_tables);
        if tables.is_empty() {
            return Ok(());
        }
        crate::backfill::store::request_whole(self.reader.pool(), Target::Convex, tables).await?;
        self.backfill.reload = true;
        Ok(())
    }
}
