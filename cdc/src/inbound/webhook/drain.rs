//! The payload drain: pages read from the stored cursor and applied with it.

use super::*;
use schema::mapping::TableId;

/// What a drain did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drained {
    /// The hook reported an error: it must be re-created.
    pub broken: bool,
    /// Rows written, deleted or parked (0: the payloads were echoes of outbound writes, or
    /// changed nothing).
    pub changed: usize,
}

impl Inbound {
    /// The next payload number of hook `id` to read (1 for a hook never read).
    pub(super) async fn stored_cursor(
        &self,
        kind: HookKind,
        id: &str,
    ) -> Result<u64, InboundError> {
        Ok(self
            .applier
            .checkpoint(&kind.cursor())
            .await?
            .filter(|c| c["id"] == id)
            .and_then(|c| c["cursor"].as_u64())
            .unwrap_or(1))
    }

    /// Reads and applies payloads from the stored cursor until Airtable has no more.
    pub async fn drain_payloads(&self, kind: HookKind) -> Result<Drained, InboundError> {
        let mut drained = Drained::default();
        let Some(hook) = self.hooks.read().await.get(&kind).cloned() else { return Ok(drained) };
        let wanted = |t: TableId| self.covers(kind, t);
        let noticed = Instant::now();
        // Read once: every page commits its successor, so the loop knows it from there.
        let mut cursor = self.stored_cursor(kind, &hook.id).await?;
        loop {
            self.pings.reading(kind);
            let page = self.client.payloads(kind.lane(), &hook.id, cursor).await?;
            let payloads = page["payloads"].as_array().cloned().unwrap_or_default();
            let next = page["cursor"].as_u64().unwrap_or(cursor + payloads.len() as u64);
            let more = page["mightHaveMore"].as_bool().unwrap_or(false);
            metrics::counter!("inbound_payloads_fetched_total").increment(payloads.len() as u64);
            if payloads.is_empty() {
                return Ok(drained);
            }
            let keys: Vec<String> =
                (0..payloads.len() as u64).map(|k| format!("{}:{}", hook.id, cursor + k)).collect();
            let seen = self.applier.seen_events("webhook", &keys).await?;
            let fresh: Vec<Value> = payloads
                .iter()
                .zip(&keys)
                .filter(|(_, k)| !seen.contains(*k))
                .map(|(p, _)| p.clone())
                .collect();
            let mut plan = payload::plan(
                &fresh,
                &*self.schema.read().await,
                self.applier.mapping(),
                &wanted,
                false,
            );
            if plan.unknown_ids {
                // The base changed since we read its schema: read it again, then anything
                // still unknown is parked.
                self.refresh_schema().await?;
                plan = payload::plan(
                    &fresh,
                    &*self.schema.read().await,
                    self.applier.mapping(),
                    &wanted,
                    true,
                );
            }
            // A row is never created, or un-parked, from a partial change: such records are
            // read whole first.
            let partial: Vec<(TableId, String)> = plan
                .upserts
                .iter()
                .filter(|u| !u.complete)
                .map(|u| (u.table, u.record_id.clone()))
                .collect();
            for (ti, rid) in self.applier.needing_whole_records(&partial).await? {
                plan.upserts.retain(|u| !(u.table == ti && u.record_id == rid));
                plan.reread.entry(ti).or_default().insert(rid);
            }
            let users = self.users();
            let mut upserts = std::mem::take(&mut plan.upserts);
            // Users first: their re-read uses the fast lane and goes before bulk reads.
            let mut tables: Vec<TableId> = plan.reread.keys().copied().collect();
            tables.sort_by_key(|t| (Some(*t) != users, *t));
            for ti in tables {
                let ids: Vec<String> = plan.reread[&ti].iter().cloned().collect();
                let t = &self.applier.mapping().tables[ti];
                let records = self
                    .client
                    .records_by_id(self.lane(ti), &t.airtable, &ids, &self.read_fields(t))
                    .await?;
                for mut u in self.upserts(ti, &records) {
                    u.changed_at = plan.reread_at.get(&(ti, u.record_id.clone())).copied();
                    upserts.push(u);
                }
            }
            let upserts = self.with_parents(upserts).await?;
            let has_users = upserts.iter().any(|u| Some(u.table) == users);
            let batch = Batch {
                upserts,
                deletes: plan.deletes,
                parked: plan.parked,
                events: keys
                    .iter()
                    .filter(|k| !seen.contains(*k))
                    .map(|k| ("webhook".to_owned(), k.clone()))
                    .collect(),
                checkpoints: vec![(kind.cursor(), json!({ "id": hook.id, "cursor": next }))],
            };
            let applied = self.applier.apply(batch).await?;
            drained.changed +=
                applied.written + applied.deleted + applied.soft_deleted + applied.parked;
            if has_users {
                self.users_changed();
                metrics::histogram!("inbound_fast_lane_seconds")
                    .record(noticed.elapsed().as_secs_f64());
            }
            tracing::info!(webhook = %hook.id, cursor, next, written = applied.written, deleted = applied.deleted + applied.soft_deleted, parked = applied.parked, "applied webhook payloads");
            self.stamps_queued(&applied.to_stamp);
            if let Some(code) = plan.hook_error {
                tracing::warn!(webhook = %hook.id, %code, "the webhook reported an error: it will be re-created");
                self.hooks.write().await.remove(&kind);
                drained.broken = true;
                return Ok(drained);
            }
            if !more {
                return Ok(drained);
            }
            cursor = next;
        }
    }
}
