//! Intake: stream events and outbox intents become pending changes, one per row.

use super::*;
use crate::replication::{Op, RowChange, Value as PgValue};
use schema::outbox::Intent;

impl ConvexDestination {
    pub(super) async fn on_event(&mut self, event: Event) -> Result<(), DestinationError> {
        match event {
            Event::Begin { final_lsn, .. } => self.tx_version = final_lsn.0,
            Event::Change(c) => self.on_change(c)?,
            Event::Truncate { relations, .. } => {
                let tables: Vec<TableAt> = relations
                    .iter()
                    .filter_map(|r| self.mirror.position(&r.name))
                    .map(TableAt)
                    .collect();
                if !tables.is_empty() {
                    // What came before goes first; the truncate deletes every document at its
                    // version, so rows written after it (same version, later) apply after.
                    self.flush_all().await?;
                    for at in tables.into_iter().rev() {
                        self.truncate(at, self.tx_version).await?;
                    }
                }
            }
            Event::Message { transactional: false, lsn, .. } => self.handed = self.handed.max(lsn),
            Event::Message { .. } => {}
            Event::Commit { end_lsn, .. } => {
                self.handed = self.handed.max(end_lsn);
                if self.idle() {
                    self.acked = self.acked.max(end_lsn);
                }
            }
        }
        Ok(())
    }

    fn on_change(&mut self, c: RowChange) -> Result<(), DestinationError> {
        let name = c.relation.name.as_str();
        if name == "sync_outbox" {
            if c.op == Op::Insert {
                if let Some(row) = &c.new {
                    self.on_intent(row.to_json());
                }
            }
            return Ok(());
        }
        let Some(at) = self.mirror.position(name).map(TableAt) else { return Ok(()) };
        let Some(id) = c.uuid_id() else {
            return Err(DestinationError::bad_change(format!("{name}: change without a uuid id")));
        };
        let version = self.tx_version;
        let change = match (c.op, c.new.as_ref()) {
            (Op::Delete, _) => Pending::Delete { version, replays: Vec::new() },
            (_, None) => return Ok(()),
            (_, Some(row)) => {
                let mut doc = Map::new();
                let mut complete = true;
                for col in &self.mirror.tables[at.0].columns {
                    match row.get(col) {
                        Some(PgValue::Unchanged) | None => complete = false,
                        Some(v) => {
                            doc.insert(col.clone(), v.to_json());
                        }
                    }
                }
                if complete {
                    Pending::Upsert { version, doc, replays: Vec::new() }
                } else {
                    // Unchanged TOAST values: complete them from what is pending, or read.
                    match self.pending.get(&(at, id)) {
                        Some(Pending::Upsert { doc: before, .. }) => {
                            let mut whole = before.clone();
                            whole.extend(doc);
                            Pending::Upsert { version, doc: whole, replays: Vec::new() }
                        }
                        _ => Pending::Reread { version, replays: Vec::new() },
                    }
                }
            }
        };
        self.pend((at, id), change);
        Ok(())
    }

    /// The latest change of a row stands; the dead letters the earlier ones would have
    /// resolved go with it.
    pub(super) fn pend(&mut self, key: (TableAt, Uuid), mut change: Pending) {
        self.first_pending.get_or_insert_with(Instant::now);
        if let Some(mut before) = self.pending.shift_remove(&key) {
            metrics::counter!("mirror_coalesced_changes_total").increment(1);
            let earlier = std::mem::take(before.replays());
            change.replays().splice(0..0, earlier);
        }
        self.pending.insert(key, change);
    }

    fn on_intent(&mut self, row: Map<String, Value>) {
        let version = self.tx_version;
        match Intent::from_row(&row) {
            Some(Intent::Resync { table, id }) => match (self.mirror.position(&table), id) {
                (Some(at), Some(id)) => {
                    self.pend((TableAt(at), id), Pending::Reread { version, replays: Vec::new() })
                }
                (Some(_), None) => {
                    self.first_pending.get_or_insert_with(Instant::now);
                    self.resync_tables.push(table);
                }
                (None, _) => {}
            },
            Some(Intent::Replay { dead_letter }) => {
                self.first_pending.get_or_insert_with(Instant::now);
                self.replay_queue.push((dead_letter, version));
            }
            Some(Intent::Backfill) => self.backfill.reload = true,
            // Progress is Airtable's derived field; the mirror carries the rows it comes from.
            Some(Intent::Progress { .. }) | None => {}
        }
    }
}
