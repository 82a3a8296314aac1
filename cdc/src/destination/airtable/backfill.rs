//! Backfill chunks in the sink (the technique: `crate::backfill`). One chunk at a time: a low
//! watermark, the read, a high watermark; rows the stream shows changing between the two are
//! dropped; the rest land in `pending` at the high watermark, behind every live change before
//! it. A flush that wrote them saves the job's progress before acknowledging.

use super::*;
use crate::backfill::{status::publish, store as jobs, Job, JobId, JobState, Mark, Watermark};
use std::collections::VecDeque;

/// The sink's backfill state.
#[derive(Default)]
pub(super) struct Backfiller {
    /// Open jobs, parents' tables first; None until read.
    jobs: Option<VecDeque<Job>>,
    /// Read the jobs again before the next chunk (a request or a cancel came in the stream).
    pub(super) reload: bool,
    chunk: Option<Chunk>,
    /// Chunks landed in `pending`: saved once a flush has written them.
    landed: Vec<Landed>,
    /// A chunk landed: flush now, not at the end of the flush window.
    pub(super) flush_now: bool,
    /// Pending rows that only a chunk wrote (no live change since): a flush sends them after
    /// the live ones.
    pub(super) landed_keys: HashSet<(TableId, Uuid)>,
}

/// The chunk between its watermarks.
struct Chunk {
    job: JobId,
    table: TableId,
    token: Uuid,
    low_seen: bool,
    rows: IndexMap<Uuid, Map<String, Value>>,
    columns: Option<Vec<String>>,
    last_key: Uuid,
    read: usize,
    last: bool,
}

struct Landed {
    job: JobId,
    table: TableId,
    last_key: Uuid,
    read: usize,
    last: bool,
}

impl Backfiller {
    /// Something landed is waiting for a flush to save it.
    pub(super) fn unsaved(&self) -> bool {
        !self.landed.is_empty()
    }

    /// A failure: the stream hands everything unacknowledged again, so the chunk and what
    /// landed are dropped (their watermarks, handed again, no longer match) and the jobs are
    /// read again: they resume at the last saved key.
    pub(super) fn abandon(&mut self) {
        self.chunk = None;
        self.landed.clear();
        self.landed_keys.clear();
        self.flush_now = false;
        self.reload = true;
    }
}

impl AirtableDestination {
    /// Rows per chunk: one window of the request budget (10 records a request), so a chunk
    /// never holds live changes up for longer than a window; 500 without a budget.
    fn chunk_rows(&self) -> usize {
        match self.config.backfill_chunk {
            0 if self.config.base_rps == 0 => 500,
            0 => (self.config.base_rps as usize * 10).max(10),
            n => n,
        }
    }

    /// A stream change to a row of the open chunk's table, after its low watermark: the
    /// stream carries the newer state, so the chunk's copy is dropped.
    pub(super) fn supersede(&mut self, ti: TableId, id: Uuid) {
        self.backfill.landed_keys.remove(&(ti, id));
        if let Some(c) = self.backfill.chunk.as_mut().filter(|c| c.table == ti && c.low_seen) {
            if c.rows.shift_remove(&id).is_some() {
                metrics::counter!("sync_backfill_rows_superseded_total").increment(1);
            }
        }
    }

    /// A truncate after the low watermark empties the chunk.
    pub(super) fn truncated(&mut self, ti: TableId) {
        if let Some(c) = self.backfill.chunk.as_mut().filter(|c| c.table == ti && c.low_seen) {
            c.rows.clear();
        }
    }

    /// A logical message: the open chunk's watermarks move it on; anything else (a chunk
    /// an earlier session or process opened) is ignored.
    pub(super) fn on_message(&mut self, prefix: &str, content: &[u8]) {
        let Some(w) = Watermark::from_message(prefix, content) else { return };
        if self.backfill.chunk.as_ref().is_none_or(|c| c.token != w.chunk) {
            return;
        }
        match w.mark {
            Mark::Low => {
                if let Some(c) = self.backfill.chunk.as_mut() {
                    c.low_seen = true;
                }
            }
            Mark::High => self.land(),
        }
    }

    /// The high watermark: what is left of the chunk becomes pending writes.
    fn land(&mut self) {
        let Some(c) = self.backfill.chunk.take() else { return };
        let since = Utc::now();
        let derived = c.columns.is_none() && !self.mapped(c.table).derived.is_empty();
        for (id, row) in c.rows {
            let mut fields = Map::new();
            for col in self.mapped(c.table).outbound() {
                if c.columns.as_ref().is_none_or(|only| only.contains(&col.column)) {
                    fields.insert(
                        col.column.clone(),
                        row.get(&col.column).cloned().unwrap_or(Value::Null),
                    );
                }
            }
            let change = Pending::Upsert {
                fields,
                complete: c.columns.is_none(),
                created_here: false,
                derived,
                replays: Vec::new(),
                since,
            };
            if !self.pending.contains_key(&(c.table, id)) {
                self.backfill.landed_keys.insert((c.table, id));
            }
            self.pend((c.table, id), change);
        }
        self.first_pending.get_or_insert_with(Instant::now);
        self.backfill.landed.push(Landed {
            job: c.job,
            table: c.table,
            last_key: c.last_key,
            read: c.read,
            last: c.last,
        });
        self.backfill.flush_now = true;
    }

    /// After a flush wrote what landed: each chunk's job moves past it, a finished job is
    /// closed (and reconciled when it asks), before anything is acknowledged.
    pub(super) async fn save_landed(&mut self) -> Result<(), DestinationError> {
        for l in std::mem::take(&mut self.backfill.landed) {
            let pool = self.store.pool().clone();
            jobs::advance(&pool, l.job, l.last_key, l.read as i64).await?;
            metrics::counter!("sync_backfill_chunks_total").increment(1);
            let table = self.mapped(l.table).table.name;
            metrics::counter!("sync_backfill_rows_written_total", "table" => table)
                .increment(l.read as u64);
            let mut reconcile = false;
            if let Some(job) = self.backfill.jobs.as_mut().and_then(|q| q.front_mut()) {
                if job.id == l.job {
                    job.rows_done += l.read as i64;
                    job.last_key = Some(l.last_key);
                    reconcile = job.reconcile;
                    publish(job);
                }
            }
            if l.last {
                self.finish_job(l.job, l.table, reconcile).await?;
            }
        }
        Ok(())
    }

    async fn finish_job(
        &mut self,
        id: JobId,
        ti: TableId,
        reconcile: bool,
    ) -> Result<(), DestinationError> {
        if reconcile {
            let fixed = self.reconcile_table(ti).await?;
            tracing::info!(job = %id, ?fixed, "reconciled the table after its backfill");
        }
        jobs::finish(self.store.pool(), id).await?;
        if let Some(q) = self.backfill.jobs.as_mut() {
            if let Some(mut job) = q.pop_front().filter(|j| j.id == id) {
                job.state = JobState::Done;
                publish(&job);
                tracing::info!(job = %id, table = %job.table, rows = job.rows_done, "backfill done");
            }
            metrics::gauge!("sync_backfill_jobs_open").set(q.len() as f64);
        }
        Ok(())
    }

    /// Opens the next chunk when there is one to do and live work leaves room: no chunk
    /// open, nothing landed unsaved, and less than half a flush's worth of live rows pending.
    pub(super) async fn backfill_step(&mut self) -> Result<(), DestinationError> {
        let b = &self.backfill;
        if b.chunk.is_some()
            || !b.landed.is_empty()
            || self.fence_until.is_some_and(|until| Instant::now() < until)
            || self.pending.len() >= self.config.max_pending_rows / 2
            || (b.jobs.as_ref().is_some_and(VecDeque::is_empty) && !b.reload)
        {
            return Ok(());
        }
        if b.jobs.is_none() || b.reload {
            self.load_jobs().await?;
        }
        let pool = self.store.pool().clone();
        loop {
            let Some(job) = self.backfill.jobs.as_mut().and_then(|q| q.front_mut()) else {
                return Ok(());
            };
            let sends = |ti: TableId| self.mapping.tables[ti].outbound().next().is_some();
            let Some(ti) = self.mapping.table_id(&job.table).filter(|ti| sends(*ti)) else {
                tracing::warn!(job = %job.id, table = %job.table, "backfill of a table the sync does not send: closed");
                let id = job.id;
                jobs::finish(&pool, id).await?;
                self.backfill.jobs.as_mut().map(VecDeque::pop_front);
                continue;
            };
            jobs::start_pending(&pool, job).await?;
            publish(job);
            let (id, table, predicate, after, columns, reconcile) = (
                job.id,
                job.table.clone(),
                job.predicate.clone(),
                job.last_key,
                job.columns.clone(),
                job.reconcile,
            );
            let limit = self.chunk_rows();
            let token = Uuid::new_v4();
            jobs::emit(&pool, Watermark { chunk: token, mark: Mark::Low }).await?;
            let rows =
                jobs::chunk(&pool, &table, predicate.as_deref(), after, limit as i64).await?;
            let Some(last_key) = rows.last().map(|(id, _)| *id) else {
                // Nothing after the last key: the job is done (its stray low mark is ignored).
                self.finish_job(id, ti, reconcile).await?;
                continue;
            };
            jobs::emit(&pool, Watermark { chunk: token, mark: Mark::High }).await?;
            let read = rows.len();
            self.backfill.chunk = Some(Chunk {
                job: id,
                table: ti,
                token,
                low_seen: false,
                rows: rows.into_iter().collect(),
                columns,
                last_key,
                read,
                last: read < limit,
            });
            return Ok(());
        }
    }

    /// Reads the open jobs, parents' tables first (their links then resolve without extra
    /// writes), oldest first within a table.
    async fn load_jobs(&mut self) -> Result<(), DestinationError> {
        let mut open = jobs::open(self.store.pool(), crate::destination::Target::Airtable).await?;
        let order = |j: &Job| self.mapping.table_id(&j.table).map_or(usize::MAX, |t| t.0);
        open.sort_by_key(|j| (order(j), j.id.0));
        // A job cancelled meanwhile: its chunk is dropped.
        if let Some(c) = &self.backfill.chunk {
            if !open.iter().any(|j| j.id == c.job) {
                self.backfill.chunk = None;
            }
        }
        metrics::gauge!("sync_backfill_jobs_open").set(open.len() as f64);
        self.backfill.jobs = Some(open.into());
        self.backfill.reload = false;
        Ok(())
    }
}
