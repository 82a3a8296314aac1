//! Backfills into Convex: rows that exist before the slot (or that an operator asks for),
//! copied table by table in the mirror's order (parents first), one chunk per step between
//! live flushes, throttled to CONVEX_BACKFILL_RPS rows a second.
//!
//! No watermarks are needed: a chunk is written at a version read just before the chunk is
//! ([`RowReader::version_for_read`]), below every change the read cannot see. A change the
//! stream carries later is newer and wins; one the chunk already holds is older and is stale
//! against it. A job's last key is saved once its chunk is in Convex; a killed daemon writes
//! that chunk again, which changes nothing.

use super::writes::Out;
use super::*;
use crate::backfill::{status::publish, store as jobs, Job, JobState};
use crate::convex::WireChange;
use std::{collections::VecDeque, time::Duration};

/// Transactions in progress when a chunk's version is read may take this long to end (one
/// in its commit takes microseconds; a longer one commits after the version).
const SETTLE: Duration = Duration::from_millis(250);
/// One step copies chunks for at most this long: live changes wait no longer behind it.
const STEP: Duration = Duration::from_millis(250);

#[derive(Default)]
pub(super) struct Backfiller {
    /// Open jobs, the mirror's order; None until read.
    jobs: Option<VecDeque<Job>>,
    /// Read the jobs again before the next chunk (a request or a cancel came in the stream).
    pub(super) reload: bool,
    /// The throttle: no chunk before this.
    next_at: Option<Instant>,
}

impl ConvexDestination {
    /// Copies chunks while there are some, nothing live is pending and the step and the
    /// throttle leave time.
    pub(super) async fn backfill_step(&mut self) -> Result<(), DestinationError> {
        let until = Instant::now() + STEP;
        while Instant::now() < until {
            if !self.backfill_chunk().await? {
                break;
            }
        }
        Ok(())
    }

    /// Copies the next chunk, if there is one to copy now; false when there was none.
    async fn backfill_chunk(&mut self) -> Result<bool, DestinationError> {
        let b = &self.backfill;
        if !self.pending.is_empty()
            || b.next_at.is_some_and(|t| Instant::now() < t)
            || (b.jobs.as_ref().is_some_and(VecDeque::is_empty) && !b.reload)
        {
            return Ok(false);
        }
        if b.jobs.is_none() || b.reload {
            self.load_jobs().await?;
        }
        let pool = self.reader.pool().clone();
        loop {
            let Some(job) = self.backfill.jobs.as_mut().and_then(|q| q.front_mut()) else {
                return Ok(false);
            };
            let Some(at) = self.mirror.position(&job.table).map(TableAt) else {
                tracing::warn!(job = %job.id, table = %job.table, "backfill of a table the mirror does not hold: closed");
                jobs::finish(&pool, job.id).await?;
                self.backfill.jobs.as_mut().map(VecDeque::pop_front);
                continue;
            };
            jobs::start_pending(&pool, job).await?;
            let (id, predicate, after) = (job.id, job.predicate.clone(), job.last_key);
            let t = &self.mirror.tables[at.0];
            let limit = self.config.backfill_chunk;
            let version = self.reader.version_for_read(SETTLE).await?;
            let rows = self
                .reader
                .chunk(t.table.name, &t.columns, predicate.as_deref(), after, limit as i64)
                .await?;
            let read = rows.len();
            let last_key = rows.last().map(|(id, _)| *id);
            let name = t.table.name;
            let outs = rows
                .into_iter()
                .map(|(id, doc)| Out::new(at, id, WireChange::upsert(name, id, version, doc)))
                .collect();
            self.writer.send_table(at, outs).await?;
            if let Some(key) = last_key {
                jobs::advance(&pool, id, key, read as i64).await?;
                metrics::counter!("mirror_backfill_rows_total", "table" => name)
                    .increment(read as u64);
            }
            let done = read < limit;
            if let Some(job) = self.backfill.jobs.as_mut().and_then(|q| q.front_mut()) {
                job.rows_done += read as i64;
                job.last_key = last_key.or(job.last_key);
                if done {
                    job.state = JobState::Done;
                }
                publish(job);
            }
            if done {
                jobs::finish(&pool, id).await?;
                if let Some(job) = self.backfill.jobs.as_mut().and_then(VecDeque::pop_front) {
                    tracing::info!(job = %id, table = %job.table, rows = job.rows_done, "backfill done");
                }
                self.gauge_open();
            }
            if self.config.backfill_rps > 0 {
                let wait =
                    Duration::from_secs_f64(read as f64 / f64::from(self.config.backfill_rps));
                self.backfill.next_at = Some(Instant::now() + wait);
            }
            return Ok(true);
        }
    }

    /// Reads the open jobs of the mirror, parents' tables first, oldest first within one.
    async fn load_jobs(&mut self) -> Result<(), DestinationError> {
        let mut open = jobs::open(self.reader.pool(), Target::Convex).await?;
        let order = |j: &Job| self.mirror.position(&j.table).unwrap_or(usize::MAX);
        open.sort_by_key(|j| (order(j), j.id.0));
        self.backfill.jobs = Some(open.into());
        self.backfill.reload = false;
        self.gauge_open();
        Ok(())
    }

    fn gauge_open(&self) {
        let n = self.backfill.jobs.as_ref().map_or(0, VecDeque::len);
        metrics::gauge!("mirror_backfill_jobs_open").set(n as f64);
    }
}
