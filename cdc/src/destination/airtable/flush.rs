//! A flush: everything pending goes out, parents first, deletes children first.

use super::*;

impl AirtableDestination {
    /// Writes everything pending; afterwards everything handed so far is acknowledged.
    pub(super) async fn flush_all(&mut self) -> Result<(), DestinationError> {
        let upto = self.handed;
        if self.pending.is_empty()
            && self.replay_queue.is_empty()
            && self.resync_tables.is_empty()
            && self.outbox_done.is_empty()
        {
            self.acked = self.acked.max(upto);
            return Ok(());
        }
        if let Some(until) = self.fence_until.take() {
            tokio::time::sleep_until(until.into()).await;
        }
        let mark = self.pending_final.max(upto);
        if self.possibly_written.is_none_or(|w| mark > w)
            && (!self.pending.is_empty()
                || !self.replay_queue.is_empty()
                || !self.resync_tables.is_empty())
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
        let mut upserts: Vec<Vec<(Uuid, Pending)>> = vec![Vec::new(); self.mapping.tables.len()];
        let mut deletes: Vec<Vec<(Uuid, Pending)>> = vec![Vec::new(); self.mapping.tables.len()];
        for ((ti, id), p) in pending {
            match p {
                Pending::Upsert { .. } => upserts[ti].push((id, p)),
                Pending::Delete { .. } => deletes[ti].push((id, p)),
            }
        }
        for (ti, rows) in self.mapping.table_ids().zip(upserts) {
            if !rows.is_empty() {
                self.upsert_rows(ti, rows).await?;
            }
        }
        for (ti, rows) in self.mapping.table_ids().zip(deletes).rev() {
            if !rows.is_empty() {
                self.delete_rows(ti, rows).await?;
            }
        }
        for ti in std::mem::take(&mut self.resync_tables) {
            self.resync_table(ti).await?;
        }
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

    /// Re-sends every row of a table, a page at a time (bounded memory).
    pub(super) async fn resync_table(&mut self, ti: TableId) -> Result<(), DestinationError> {
        let table = self.mapped(ti).table.name;
        let mut after = None;
        loop {
            let ids = self.store.ids_after(table, after, 1000).await?;
            let Some(last) = ids.last().copied() else { return Ok(()) };
            let since = Utc::now();
            let rows = ids.into_iter().map(|id| (id, Pending::reread(since, Vec::new()))).collect();
            self.upsert_rows(ti, rows).await?;
            after = Some(last);
        }
    }
}
