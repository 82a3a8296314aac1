//! The reconcile: Airtable made equal to Postgres, for what no event can fix.

use super::*;

impl AirtableDestination {
    /// Makes Airtable equal Postgres for every outbound table: records whose pg id is gone
    /// from Postgres are deleted, duplicates of a pg id removed, rows Airtable lacks re-sent,
    /// and the id map corrected. Records without a pg id (made by hand in Airtable) are left
    /// alone. Catches what no event can: a write a dead process had in flight that landed
    /// after its row was deleted.
    pub async fn reconcile(&mut self) -> Result<(), DestinationError> {
        if !std::mem::take(&mut self.reconcile_full) {
            return crate::airtable::calls::shaped(self.sampled_reconcile()).await;
        }
        let started = Instant::now();
        self.flush_all().await?;
        let mut fixed = Fixed::default();
        for ti in self.mapping.table_ids() {
            if self.client.fence().stopping() {
                // Still owed (persisted): the successor runs it.
                tracing::info!("stepping down: the whole reconcile is left to the next leader");
                return Ok(());
            }
            if self.mapped(ti).outbound().next().is_some() {
                fixed.add(self.reconcile_table(ti).await?);
            }
        }
        if !self.client.fence().stopping() {
            self.store.set_reconcile_owed(false).await?;
        }
        metrics::counter!("sync_reconcile_runs_total").increment(1);
        let Fixed { orphans, duplicates, missing } = fixed;
        tracing::info!(
            orphans,
            duplicates,
            missing,
            ms = started.elapsed().as_millis() as u64,
            "reconciled Airtable with Postgres"
        );
        self.reconcile_at = self.config.reconcile_interval.map(|i| Instant::now() + i);
        Ok(())
    }

    /// The periodic backstop, bounded: `reconcile_sample` random rows of each outbound table
    /// are looked up in Airtable by record id (≤ 50 a request), and those Airtable lacks are
    /// re-sent. Orphans and duplicates are the daily parity check's to report and the whole
    /// reconcile's (after an unclean stop) to fix.
    async fn sampled_reconcile(&mut self) -> Result<(), DestinationError> {
        let started = Instant::now();
        self.flush_all().await?;
        let mut missing = 0u64;
        for ti in self.mapping.table_ids() {
            if self.mapped(ti).outbound().next().is_none() {
                continue;
            }
            let t = self.mapped(ti).clone();
            let sample =
                self.store.sample_mapped(t.table.name, self.config.reconcile_sample).await?;
            let records: Vec<String> = sample.iter().filter_map(|(_, r)| r.clone()).collect();
            let found = match self
                .client
                .records_by_id(
                    Lane::Bulk,
                    &t.airtable,
                    &records,
                    std::slice::from_ref(&self.mapping.merge_field),
                )
                .await
            {
                Ok(found) => found,
                Err(e) if e.is_auth() => return Err(DestinationError::auth(e.to_string())),
                Err(e) => {
                    tracing::warn!(table = t.table.name, error = %e, "sampled reconcile: cannot read Airtable; next run retries");
                    continue;
                }
            };
            let present: HashSet<&str> = found.iter().filter_map(|r| r["id"].as_str()).collect();
            let absent: Vec<Uuid> = sample
                .iter()
                .filter(|(_, r)| r.as_deref().is_none_or(|r| !present.contains(r)))
                .map(|(id, _)| *id)
                .collect();
            missing += absent.len() as u64;
            self.backfill_missing(ti, absent).await?;
        }
        metrics::counter!("sync_reconcile_runs_total").increment(1);
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "missing").increment(missing);
        tracing::info!(
            missing,
            sample = self.config.reconcile_sample,
            ms = started.elapsed().as_millis() as u64,
            "sampled reconcile"
        );
        let calls = self.client.budget().calls();
        self.reconcile_at = self
            .config
            .reconcile_interval
            .map(|i| Instant::now() + crate::airtable::calls::stretched(i, calls));
        Ok(())
    }

    /// One table of the reconcile (also run after a backfill that asks for it, e.g. after
    /// `cdc slot recover`: deletes that happened while the slot was lost never streamed).
    pub(super) async fn reconcile_table(&mut self, ti: TableId) -> Result<Fixed, DestinationError> {
        let (mut orphans, mut duplicates, mut missing) = (0u64, 0u64, 0u64);
        {
            let t = self.mapped(ti).clone();
            let listed = match self
                .client
                .list_merge_values(Lane::Bulk, &t.airtable, &self.mapping.merge_field)
                .await
            {
                Ok(l) => l,
                Err(e) if e.is_auth() => return Err(DestinationError::auth(e.to_string())),
                Err(e) => {
                    tracing::warn!(table = t.table.name, error = %e, "reconcile: cannot list Airtable; will try again");
                    return Ok(Fixed::default());
                }
            };
            let in_pg: HashSet<Uuid> =
                self.store.all_ids(t.table.name).await?.into_iter().collect();
            let mapped = self
                .store
                .record_ids(t.table.name, &in_pg.iter().copied().collect::<Vec<_>>())
                .await?;
            let mut seen: HashMap<Uuid, String> = HashMap::new();
            let mut remove: Vec<String> = Vec::new();
            for (value, record) in listed {
                let Ok(id) = value.parse::<Uuid>() else { continue };
                if !in_pg.contains(&id) {
                    orphans += 1;
                    remove.push(record);
                } else if let Some(kept) = seen.get(&id) {
                    // Keep the record the id map points at.
                    duplicates += 1;
                    if mapped.get(&id) == Some(&record) {
                        remove.push(kept.clone());
                        seen.insert(id, record);
                    } else {
                        remove.push(record);
                    }
                } else {
                    seen.insert(id, record);
                }
            }
            for chunk in remove.chunks(10) {
                match self.client.delete(Lane::Bulk, &t.airtable, chunk).await {
                    Ok(()) => {}
                    Err(e) if e.is_gone() => {
                        for rec in chunk {
                            let _ = self
                                .client
                                .delete(Lane::Bulk, &t.airtable, std::slice::from_ref(rec))
                                .await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(table = t.table.name, error = %e, "reconcile: delete failed; next reconcile retries")
                    }
                }
            }
            let pairs: Vec<(Uuid, String)> = seen
                .iter()
                .filter(|(id, rec)| mapped.get(id) != Some(rec))
                .map(|(id, rec)| (*id, rec.clone()))
                .collect();
            self.store.save_record_ids(t.table.name, &pairs).await?;
            let absent: Vec<Uuid> =
                in_pg.iter().filter(|id| !seen.contains_key(id)).copied().collect();
            missing += absent.len() as u64;
            self.backfill_missing(ti, absent).await?;
        }
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "orphan").increment(orphans);
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "duplicate")
            .increment(duplicates);
        metrics::counter!("sync_reconcile_fixed_total", "kind" => "missing").increment(missing);
        Ok(Fixed { orphans, duplicates, missing })
    }
}

/// What a reconcile fixed.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fixed {
    orphans: u64,
    duplicates: u64,
    missing: u64,
}

impl Fixed {
    fn add(&mut self, o: Fixed) {
        self.orphans += o.orphans;
        self.duplicates += o.duplicates;
        self.missing += o.missing;
    }
}

impl AirtableDestination {
    /// Rows Airtable lacks go through the backfill (the one copy path): those an open
    /// backfill of the whole table has yet to reach are left to it, the rest are queued as a
    /// repair job of just those rows (the whole table past 1,000).
    async fn backfill_missing(
        &mut self,
        ti: TableId,
        mut ids: Vec<Uuid>,
    ) -> Result<(), DestinationError> {
        use crate::backfill::{store, NewJob, Reason};
        let table = self.mapped(ti).table.name;
        let covered = store::open(self.store.pool(), crate::destination::Target::Airtable)
            .await?
            .into_iter()
            .filter(|j| j.table == table && j.columns.is_none() && j.predicate.is_none())
            .map(|j| j.last_key)
            .min();
        if let Some(after) = covered {
            ids.retain(|id| after.is_some_and(|k| *id <= k));
        }
        if ids.is_empty() {
            return Ok(());
        }
        let job = NewJob::rows(table, &ids, Reason::Repair);
        store::request(self.store.pool(), &[job], false).await?;
        self.backfill.reload = true;
        tracing::info!(table, rows = ids.len(), "queued a repair backfill of rows Airtable lacks");
        Ok(())
    }
}
