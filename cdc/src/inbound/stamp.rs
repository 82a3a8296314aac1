//! pg id stamps: a row made from an Airtable record gets its pg id written back into that
//! record, so the record names its row. The applier queues stamps (`sync_pending_stamps`) in
//! the transaction that makes the rows; this task writes them in the bulk lane, up to 10 per
//! request: a table's batch goes once it is full or its oldest stamp has waited
//! SYNC_STAMP_DELAY_MS. A user event so costs its payload read, and a tenth of a stamp.
//!
//! Until its stamp lands a record is still never duplicated: outbound writes reach it by
//! its record id (airtable_id_map), not by merge.

use super::{apply::Parked, stopped, Inbound, InboundError};
use crate::airtable::{AirtableError, Lane};
use crate::backoff::Backoff;
use schema::mapping::TableId;
use serde_json::{json, Map, Value};
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;
use uuid::Uuid;

/// Records per update request (Airtable's limit).
const BATCH: usize = 10;

impl Inbound {
    /// Stamps were queued: the stamper looks at its queue.
    pub(super) fn stamps_queued(&self, stamps: &[(TableId, String, Uuid)]) {
        if !stamps.is_empty() {
            self.stamp_due.notify_one();
        }
    }

    /// Writes queued stamps as they fall due, until shutdown.
    pub(super) async fn stamp_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let wait = match self.stamp_round().await {
                Ok(next) => {
                    backoff.reset();
                    next
                }
                Err(e) => {
                    metrics::counter!("inbound_stamp_failures_total").increment(1);
                    tracing::warn!(error = %e, "cannot write pg ids into Airtable records yet");
                    Some(backoff.next_delay())
                }
            };
            // Nothing queued: only a new stamp (or a restart) wakes the task.
            let wait = wait.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = self.stamp_due.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    }

    /// Sends every batch that is due; returns when the next one falls due (None: the queue
    /// is empty).
    async fn stamp_round(&self) -> Result<Option<Duration>, InboundError> {
        let delay = self.config.stamp_delay;
        loop {
            let queue = self.applier.stamp_queue().await?;
            metrics::gauge!("inbound_stamps_pending")
                .set(queue.iter().map(|q| q.count).sum::<i64>() as f64);
            let mut next: Option<Duration> = None;
            let mut sent = false;
            for q in queue {
                let Some(ti) = self.applier.mapping().table_id(&q.table) else {
                    // A table no longer mapped: nothing to stamp.
                    self.applier.drop_stamps(&q.table).await?;
                    continue;
                };
                if q.count as usize >= BATCH || q.waited >= delay {
                    let batch = self.applier.stamps(&q.table, BATCH).await?;
                    self.stamp_batch(ti, &batch).await?;
                    sent = true;
                } else {
                    let due = delay - q.waited;
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            if !sent {
                return Ok(next);
            }
        }
    }

    /// Writes one batch of stamps; a record gone from Airtable needs none, a refused stamp
    /// is one dead letter (the next full reconcile stamps that record again).
    async fn stamp_batch(&self, ti: TableId, batch: &[(String, Uuid)]) -> Result<(), InboundError> {
        let m = self.applier.mapping();
        let t = &m.tables[ti];
        let records: Vec<(String, Map<String, Value>)> = batch
            .iter()
            .map(|(rec, id)| {
                let mut f = Map::new();
                f.insert(m.merge_field.clone(), json!(id.to_string()));
                (rec.clone(), f)
            })
            .collect();
        match self.client.update(Lane::Bulk, &t.airtable, &records).await {
            Ok(()) => {
                metrics::counter!("inbound_stamps_written_total").increment(batch.len() as u64);
                tracing::info!(
                    table = t.table.name,
                    records = batch.len(),
                    "wrote pg ids into Airtable records"
                );
            }
            Err(e @ AirtableError::Rejected { .. }) if batch.len() > 1 => {
                // One record spoils the request: each on its own finds it.
                tracing::info!(table = t.table.name, error = %e, "a stamp batch was refused; stamping one by one");
                for one in batch.chunks(1) {
                    Box::pin(self.stamp_batch(ti, one)).await?;
                }
                return Ok(());
            }
            Err(e) if e.is_gone() => {
                tracing::info!(table = t.table.name, record = %batch[0].0, "record gone before its stamp: nothing to write");
            }
            Err(e @ AirtableError::Rejected { .. }) => {
                let (rec, id) = &batch[0];
                let parked = Parked {
                    table: Some(t.table.name.to_owned()),
                    record_id: Some(rec.clone()),
                    operation: "stamp",
                    payload: json!({ "pg_id": id }),
                    code: e.code(),
                    message: e.to_string(),
                };
                self.applier.park_one(&parked).await?;
            }
            // Airtable unreachable or the token refused: the stamps stay queued.
            Err(e) => return Err(e.into()),
        }
        self.applier.stamps_written(t.table.name, batch).await?;
        Ok(())
    }
}
