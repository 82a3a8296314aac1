//! Writes and dead letters: batches sent (a refused batch bisected down to its refused
//! rows), deletes, and what a failure means for the rows in it.

use super::*;

impl AirtableDestination {
    /// Sends one batch; on a rejection splits it to isolate the refused rows.
    pub(super) fn send_upserts(&self, ti: TableId, batch: Vec<Outgoing>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let t = self.mapped(ti);
            let batch_id = self.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let started = Instant::now();
            // Rows whose record is known are written by record id: an imported record has
            // no merge value until this write stamps it, and merging would duplicate it.
            let ids: Vec<Uuid> = batch.iter().map(|o| o.id).collect();
            let known = self.store.record_ids(t.table.name, &ids).await?;
            let records: Vec<(Option<&str>, &Map<String, Value>)> =
                batch.iter().map(|o| (known.get(&o.id).map(String::as_str), &o.fields)).collect();
            match self
                .client
                .upsert(Lane::Bulk, &t.airtable, &self.mapping.merge_field, &records)
                .await
            {
                Ok(record_ids) => {
                    let pairs: Vec<(Uuid, String)> =
                        batch.iter().map(|o| o.id).zip(record_ids).collect();
                    self.store.save_record_ids(t.table.name, &pairs).await?;
                    let ids: Vec<Uuid> = batch.iter().map(|o| o.id).collect();
                    self.written(t.table.name, &ids).await?;
                    let now = Utc::now();
                    for o in &batch {
                        metrics::histogram!("sync_commit_to_airtable_seconds")
                            .record((now - o.since).num_milliseconds().max(0) as f64 / 1000.0);
                        for dl in &o.replays {
                            self.store.resolve_dead_letter(*dl).await?;
                        }
                    }
                    tracing::info!(
                        batch = batch_id,
                        table = t.table.name,
                        records = batch.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "upserted batch"
                    );
                    Ok(())
                }
                Err(e) if e.is_gone() && batch.len() == 1 && known.contains_key(&batch[0].id) => {
                    // Its record was deleted in Airtable: forget it and merge (recreates it).
                    tracing::info!(table = t.table.name, id = %batch[0].id, error = %e, "record gone in Airtable; writing by merge field");
                    self.store.forget_record_ids(t.table.name, &ids).await?;
                    self.send_upserts(ti, batch).await
                }
                Err(e @ AirtableError::Rejected { .. }) if batch.len() > 1 => {
                    tracing::warn!(batch = batch_id, table = t.table.name, records = batch.len(), error = %e, "batch rejected; splitting to find the refused rows");
                    let (a, b) = batch.split_at(batch.len() / 2);
                    self.send_upserts(ti, a.to_vec()).await?;
                    self.send_upserts(ti, b.to_vec()).await
                }
                Err(e) => {
                    for o in batch {
                        self.fail(
                            t.table.name,
                            o.id,
                            "upsert",
                            Value::Object(o.fields),
                            &e,
                            &o.replays,
                        )
                        .await?;
                    }
                    Ok(())
                }
            }
        })
    }

    pub(super) async fn delete_rows(
        &mut self,
        ti: TableId,
        rows: Vec<(Uuid, Pending)>,
    ) -> Result<(), DestinationError> {
        let t = self.mapped(ti).clone();
        let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        let replays: HashMap<Uuid, Vec<i64>> = rows
            .into_iter()
            .map(|(id, p)| {
                (
                    id,
                    match p {
                        Pending::Delete { replays, .. } | Pending::Upsert { replays, .. } => {
                            replays
                        }
                    },
                )
            })
            .collect();
        let mut targets: HashMap<Uuid, String> = self.store.record_ids(t.table.name, &ids).await?;
        let unknown: Vec<String> =
            ids.iter().filter(|id| !targets.contains_key(id)).map(Uuid::to_string).collect();
        if !unknown.is_empty() {
            match self
                .client
                .find_by_merge(Lane::Bulk, &t.airtable, &self.mapping.merge_field, &unknown)
                .await
            {
                Ok(found) => targets
                    .extend(found.into_iter().filter_map(|(v, r)| Some((v.parse().ok()?, r)))),
                Err(e) => {
                    for id in ids.iter().filter(|id| !targets.contains_key(id)) {
                        self.fail(t.table.name, *id, "delete", json!({}), &e, &replays[id]).await?;
                    }
                }
            }
        }
        let list: Vec<(Uuid, String)> = targets.into_iter().collect();
        for chunk in list.chunks(10) {
            let recs: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let outcome = match self.client.delete(Lane::Bulk, &t.airtable, &recs).await {
                Err(e) if e.is_gone() && chunk.len() > 1 => {
                    // One of them is gone already: delete one by one, gone counts as done.
                    for (id, rec) in chunk {
                        match self
                            .client
                            .delete(Lane::Bulk, &t.airtable, std::slice::from_ref(rec))
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_gone() => {}
                            Err(e) => {
                                self.fail_delete(t.table.name, *id, rec, &e, &replays[id]).await?
                            }
                        }
                    }
                    Ok(())
                }
                Err(e) if e.is_gone() => Ok(()),
                other => other,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(table = t.table.name, records = chunk.len(), "deleted batch");
                    let gone: Vec<Uuid> = chunk.iter().map(|(id, _)| *id).collect();
                    self.written(t.table.name, &gone).await?;
                    for (id, _) in chunk {
                        for dl in &replays[id] {
                            self.store.resolve_dead_letter(*dl).await?;
                        }
                    }
                }
                Err(e) => {
                    for (id, rec) in chunk {
                        self.fail_delete(t.table.name, *id, rec, &e, &replays[id]).await?;
                    }
                }
            }
        }
        // Rows never in Airtable (and not found there) are done too.
        for id in ids.iter().filter(|id| !list.iter().any(|(x, _)| x == *id)) {
            for dl in &replays[id] {
                self.store.resolve_dead_letter(*dl).await?;
            }
        }
        self.store.forget_record_ids(t.table.name, &ids).await?;
        Ok(())
    }

    /// A delete of record `rec` (row `id`) failed.
    async fn fail_delete(
        &self,
        table: &str,
        id: Uuid,
        rec: &str,
        e: &AirtableError,
        replays: &[i64],
    ) -> Result<(), DestinationError> {
        self.fail(table, id, "delete", json!({ "record": rec }), e, replays).await
    }

    /// Truncate: every record of the table known to the id map goes.
    pub(super) async fn truncate(&mut self, ti: TableId) -> Result<(), DestinationError> {
        let table = self.mapped(ti).table.name;
        let mapped = self.store.all_mapped(table).await?;
        let since = Utc::now();
        let rows = mapped
            .into_iter()
            .map(|(id, _)| (id, Pending::Delete { replays: Vec::new(), since }))
            .collect();
        self.delete_rows(ti, rows).await
    }

    /// A write failed: dead-letter it (or count another attempt of a replay) when the record
    /// is at fault. When the daemon is (an auth error), or Airtable stayed unreachable past
    /// every retry, no record is: the error goes to the stream, which pauses and hands
    /// everything again later.
    pub(super) async fn fail(
        &self,
        table: &str,
        id: Uuid,
        operation: &'static str,
        payload: Value,
        e: &AirtableError,
        replays: &[i64],
    ) -> Result<(), DestinationError> {
        match e {
            AirtableError::Unauthorized { .. } => {
                return Err(DestinationError::auth(e.to_string()).with_source(e.clone()))
            }
            AirtableError::Exhausted { .. } => {
                return Err(DestinationError::retry(e.to_string()).with_source(e.clone()))
            }
            AirtableError::Fenced(_) => {
                return Err(DestinationError::new(ErrorKind::Fatal, e.to_string()))
            }
            AirtableError::Rejected { .. } => {}
        }
        tracing::warn!(table, pg_id = %id, operation, error = %e, "dead-lettered");
        if replays.is_empty() {
            self.dead_letter(
                table,
                Some(id),
                operation,
                payload,
                &e.code(),
                &e.to_string(),
                e.attempts() as i32,
            )
            .await
        } else {
            for dl in replays {
                self.store.retry_failed(*dl, &e.code(), &e.to_string()).await?;
            }
            Ok(())
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn dead_letter(
        &self,
        table: &str,
        id: Option<Uuid>,
        operation: &'static str,
        payload: Value,
        code: &str,
        message: &str,
        attempts: i32,
    ) -> Result<(), DestinationError> {
        let d = DeadLetter {
            destination: crate::destination::Target::Airtable,
            direction: Direction::Outbound,
            table: Some(table.to_owned()),
            pg_id: id,
            record_id: None,
            operation,
            payload,
            code: code.to_owned(),
            message: message.to_owned(),
            attempts,
        };
        self.store.dead_letter(&d).await?;
        self.dead_letters_pending.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Rows just written: their pending dead letters are resolved (skipped while none is
    /// pending, which is the common case).
    pub(super) async fn written(&self, table: &str, ids: &[Uuid]) -> Result<(), DestinationError> {
        if self.dead_letters_pending.load(std::sync::atomic::Ordering::Relaxed) {
            let n = self.store.resolve_rows(table, ids).await?;
            if n > 0 {
                tracing::info!(table, resolved = n, "later writes resolved dead letters");
            }
        }
        Ok(())
    }
}
