//! Intake: stream changes and outbox intents become pending writes, coalesced per row.

use super::*;
use schema::outbox::Intent;

impl AirtableDestination {
    /// Outbound columns of a row as JSON; false when an unchanged TOAST value is missing.
    pub(super) fn outbound_fields(
        &self,
        ti: TableId,
        row: &crate::replication::Row,
    ) -> (Map<String, Value>, bool) {
        let mut fields = Map::new();
        let mut complete = true;
        for c in self.mapped(ti).outbound() {
            match row.get(&c.column) {
                Some(PgValue::Unchanged) | None => complete = false,
                Some(v) => {
                    fields.insert(c.column.clone(), v.to_json());
                }
            }
        }
        (fields, complete)
    }

    pub(super) fn pend(&mut self, key: (TableId, Uuid), change: Pending) {
        self.first_pending.get_or_insert_with(Instant::now);
        self.pending_final = self.pending_final.max(self.tx_final);
        let merged = match (self.pending.shift_remove(&key), change) {
            (None, c) => Some(c),
            (
                Some(Pending::Upsert {
                    mut fields,
                    complete,
                    created_here,
                    derived,
                    mut replays,
                    since,
                }),
                Pending::Upsert { fields: f2, complete: c2, derived: d2, replays: r2, .. },
            ) => {
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                fields.extend(f2);
                replays.extend(r2);
                Some(Pending::Upsert {
                    fields,
                    complete: complete || c2,
                    created_here,
                    derived: derived || d2,
                    replays,
                    since,
                })
            }
            (Some(Pending::Upsert { created_here: true, .. }), Pending::Delete { .. }) => {
                // Inserted and deleted before any flush: Airtable never needs to know.
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                None
            }
            (Some(Pending::Upsert { replays, since, .. }), Pending::Delete { replays: r2, .. }) => {
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                Some(Pending::Delete { replays: replays.into_iter().chain(r2).collect(), since })
            }
            (
                Some(Pending::Delete { mut replays, since }),
                Pending::Upsert { fields, replays: r2, .. },
            ) if fields.is_empty() => {
                // A re-read or new derived fields of a deleted row (e.g. the usage its delete
                // cascaded to): the delete stands.
                replays.extend(r2);
                Some(Pending::Delete { replays, since })
            }
            (
                Some(Pending::Delete { since, .. }),
                Pending::Upsert { fields, complete, derived, replays, .. },
            ) => {
                metrics::counter!("sync_coalesced_changes_total").increment(1);
                Some(Pending::Upsert {
                    fields,
                    complete,
                    created_here: false,
                    derived,
                    replays,
                    since,
                })
            }
            (Some(Pending::Delete { mut replays, since }), Pending::Delete { replays: r2, .. }) => {
                replays.extend(r2);
                Some(Pending::Delete { replays, since })
            }
        };
        if let Some(m) = merged {
            self.pending.insert(key, m);
        }
    }

    pub(super) fn on_change(&mut self, c: RowChange) -> Result<(), DestinationError> {
        let name = c.relation.name.as_str();
        if name == "sync_outbox" {
            if c.op == Op::Insert {
                if let Some(row) = &c.new {
                    self.on_intent(row.to_json());
                }
            }
            return Ok(());
        }
        let Some(ti) = self.table_index(name) else { return Ok(()) };
        let Some(id) = c.uuid_id() else {
            return Err(DestinationError::bad_change(format!("{name}: change without a uuid id")));
        };
        let since = self.tx_time;
        self.supersede(ti, id);
        self.derive_from(ti, &c, since);
        let derived = !self.mapped(ti).derived.is_empty();
        match c.op {
            Op::Insert | Op::Update => {
                let Some(row) = c.new.as_ref() else { return Ok(()) };
                let (fields, complete) = self.outbound_fields(ti, row);
                // A change to Airtable-owned columns only has nothing to send.
                if c.op == Op::Update && fields.is_empty() {
                    return Ok(());
                }
                // Only an insert Airtable cannot have seen may be cancelled by a later delete.
                let created_here = c.op == Op::Insert && !self.redelivered();
                self.pend(
                    (ti, id),
                    Pending::Upsert {
                        fields,
                        complete,
                        created_here,
                        derived,
                        replays: Vec::new(),
                        since,
                    },
                );
            }
            Op::Delete => self.pend((ti, id), Pending::Delete { replays: Vec::new(), since }),
        }
        Ok(())
    }

    /// A change to a row derived fields are computed from (planning, usage) moves them for
    /// the rows it names, before and after the change: those get their derived fields again,
    /// read at flush. Writers need not say so.
    fn derive_from(&mut self, ti: TableId, c: &RowChange, since: DateTime<Utc>) {
        if !self.derived_sources.iter().any(|(s, ..)| *s == ti) {
            return;
        }
        let old = c.old.as_ref().filter(|_| !c.old_is_key_only);
        let mut touched = Vec::new();
        for (source, column, target) in &self.derived_sources {
            if *source != ti {
                continue;
            }
            for row in [c.new.as_ref(), old].into_iter().flatten() {
                if let Some(PgValue::Uuid(u)) = row.get(column) {
                    if !touched.contains(&(*target, *u)) {
                        touched.push((*target, *u));
                    }
                }
            }
        }
        for key in touched {
            self.pend(key, Pending::derived_only(since));
        }
    }

    /// An outbox intent: resync a row or a table, replay a dead letter, refresh progress.
    pub(super) fn on_intent(&mut self, row: Map<String, Value>) {
        let outbox_id = row.get("id").and_then(Value::as_i64);
        let since = self.tx_time;
        match Intent::from_row(&row) {
            Some(Intent::Resync { table, id }) => match (self.table_index(&table), id) {
                (Some(ti), Some(id)) => self.pend((ti, id), Pending::reread(since, Vec::new())),
                (Some(ti), None) => {
                    self.first_pending.get_or_insert_with(Instant::now);
                    self.resync_tables.push(ti);
                }
                (None, _) => tracing::warn!(%table, "ignoring a resync of a table not mapped"),
            },
            Some(Intent::Progress { table, id }) => match self.table_index(&table) {
                Some(ti) => self.pend((ti, id), Pending::derived_only(since)),
                None => tracing::warn!(%table, "ignoring progress of a table not mapped"),
            },
            Some(Intent::Backfill) => self.backfill.reload = true,
            Some(Intent::Replay { dead_letter }) => {
                self.first_pending.get_or_insert_with(Instant::now);
                self.replay_queue.push(dead_letter);
            }
            None => {
                tracing::warn!(?row, "ignoring an outbox intent this build does not understand")
            }
        }
        if let Some(id) = outbox_id {
            self.outbox_done.push(id);
        }
    }
}
