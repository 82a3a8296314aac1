//! A flush: everything pending goes out, parents first, deletes children first.

use super::*;

impl AirtableDestination {
    /// Writes everything pending; afterwards everything handed so far is acknowledged.
    pub(super) async fn flush_all(&mut self) -> Result<(), DestinationError> {
        let upto = self.handed;
        self.backfill.flush_now = false;
        if self.idle() {
            self.acked = self.acked.max(upto);
            return Ok(());
        }
        if let Some(until) = self.fence_until {
            if self.client.fence().stopping() && Instant::now() < until {
                // Stepping down inside the unclean-stop fence: nothing is written or
                // acknowledged; the successor sees the same redelivery and fences itself.
                return Ok(());
            }
            tokio::time::sleep_until(until.into()).await;
            self.fence_until = None;
        }
        self.check_epoch().await?;
        let mark = self.pending_final.max(upto);
        if self.possibly_written.is_none_or(|w| mark > w)
            && (!self.pending.is_empty() || !self.replay_queue.is_empty())
        {
            self.store.set_possibly_written(mark).await?;
            self.possibly_written = Some(mark);
        }
        for dl in std::mem::take(&mut self.replay_queue) {
            match self.store.dead_letter_row(dl).await? {
                Some((Some(table), Some(id), op)) => match self.table_index(&table) {
                    Some(ti) => {
                        let since = Utc::now();
                        let change = if op == "delete" {
                            Pending::Delete { replays: vec![dl], since }
                        } else {
                            Pending::reread(since, vec![dl])
                        };
                        self.pend((ti, id), change);
                    }
                    None => {
                        tracing::warn!(dead_letter = dl, %table, "cannot replay: table not mapped")
                    }
                },
                _ => tracing::warn!(
                    dead_letter = dl,
                    "nothing to replay (not pending, or not an outbound row)"
                ),
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let backfilled = std::mem::take(&mut self.backfill.landed_keys);
        let n = self.mapping.tables.len();
        // Live changes go before rows only a backfill chunk brought.
        let (mut live, mut copied, mut deletes): (Vec<Vec<_>>, Vec<Vec<_>>, Vec<Vec<_>>) =
            (vec![Vec::new(); n], vec![Vec::new(); n], vec![Vec::new(); n]);
        for ((ti, id), p) in pending {
            match p {
                Pending::Upsert { .. } if backfilled.contains(&(ti, id)) => {
                    copied[ti].push((id, p))
                }
                Pending::Upsert { .. } => live[ti].push((id, p)),
                Pending::Delete { .. } => deletes[ti].push((id, p)),
            }
        }
        for (ti, rows) in
            self.mapping.table_ids().zip(live).chain(self.mapping.table_ids().zip(copied))
        {
            if !rows.is_empty() {
                self.upsert_rows(ti, rows).await?;
            }
        }
        for (ti, rows) in self.mapping.table_ids().zip(deletes).rev() {
            if !rows.is_empty() {
                self.delete_rows(ti, rows).await?;
            }
        }
        self.queue_resyncs().await?;
        // Before anything is acknowledged: a chunk's progress is saved once it is written.
        self.save_landed().await?;
        let done = std::mem::take(&mut self.outbox_done);
        self.store.purge_outbox(&done).await?;
        if let Ok((all, outbound)) = self.store.pending_dead_letters().await {
            metrics::gauge!("sync_dlq_pending").set(all as f64);
            self.dead_letters_pending.store(outbound > 0, std::sync::atomic::Ordering::Relaxed);
        }
        self.first_pending = None;
        self.pending_final = Lsn::ZERO;
        self.acked = self.acked.max(upto);
        Ok(())
    }

    /// Under HA: the slot's epoch in Postgres is still this leader's (a leader whose lock was
    /// lost may not have noticed yet; its successor bumped the epoch).
    async fn check_epoch(&self) -> Result<(), DestinationError> {
        let Some((slot, epoch)) = self.client.fence().lease() else { return Ok(()) };
        match self.store.leader_epoch(&slot).await? {
            Some(e) if e == epoch => Ok(()),
            other => {
                let reason =
                    format!("the slot's epoch is {other:?}, ours {epoch}: another process leads");
                self.client.fence().depose(reason.clone());
                Err(DestinationError::new(ErrorKind::Fatal, reason))
            }
        }
    }

    /// Whole-table resyncs from the outbox become backfill jobs (the one copy path).
    async fn queue_resyncs(&mut self) -> Result<(), DestinationError> {
        let tables = std::mem::take(&mut self.resync_tables);
        if tables.is_empty() {
            return Ok(());
        }
        let names = tables.into_iter().map(|ti| self.mapped(ti).table.name);
        crate::backfill::store::request_whole(
            self.store.pool(),
            crate::destination::Target::Airtable,
            names,
        )
        .await?;
        self.backfill.reload = true;
        Ok(())
    }
}
