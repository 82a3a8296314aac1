//! Turns decoded pgoutput messages into typed events, keeping the Relation and Type caches
//! of the current session.

use super::{
    event::{pg_time, Column, Event, Lsn, Op, Relation, Row, RowChange},
    pgoutput::{Cell, Message, OldTuple, Tuple},
    value::{cell_text, Value},
};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

/// Why a message could not become an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("change for relation {0} before its Relation message")]
    UnknownRelation(u32),
    #[error("relation {relation}: tuple has {got} columns, the relation {expected}")]
    ColumnCount { relation: String, got: usize, expected: usize },
}

/// The caches of one replication session (the server resends Relation messages in a new
/// session, so a reconnect starts with empty caches).
#[derive(Debug, Default)]
pub struct Decoder {
    relations: HashMap<u32, Arc<Relation>>,
    enums: HashSet<u32>,
}

impl Decoder {
    pub fn relation(&self, id: u32) -> Option<&Arc<Relation>> {
        self.relations.get(&id)
    }

    /// Applies one message: cache updates return None; data returns its event.
    pub fn event(&mut self, msg: Message) -> Result<Option<Event>, EventError> {
        Ok(Some(match msg {
            Message::Relation(r) => {
                let rel = Relation {
                    id: r.id,
                    namespace: r.namespace,
                    name: r.name,
                    replica_identity: r.replica_identity,
                    columns: r
                        .columns
                        .into_iter()
                        .map(|c| Column { name: c.name, type_oid: c.type_oid, key: c.key })
                        .collect(),
                };
                self.relations.insert(r.id, Arc::new(rel));
                return Ok(None);
            }
            Message::Type { id, .. } => {
                // pgoutput announces user-defined types before their first use; the ones
                // the stream sees are enums or domains over text here.
                self.enums.insert(id);
                return Ok(None);
            }
            Message::Origin { .. } => return Ok(None),
            Message::Begin { final_lsn, commit_time, xid } => {
                Event::Begin { xid, final_lsn: Lsn(final_lsn), commit_time: pg_time(commit_time) }
            }
            Message::Commit { commit_lsn, end_lsn, commit_time, .. } => Event::Commit {
                commit_lsn: Lsn(commit_lsn),
                end_lsn: Lsn(end_lsn),
                commit_time: pg_time(commit_time),
            },
            Message::Message { transactional, lsn, prefix, content } => {
                Event::Message { transactional, lsn: Lsn(lsn), prefix, content }
            }
            Message::Insert { relation_id, new } => {
                let rel = self.rel(relation_id)?;
                Event::Change(RowChange {
                    op: Op::Insert,
                    new: Some(self.row(&rel, new)?),
                    old: None,
                    old_is_key_only: false,
                    relation: rel,
                })
            }
            Message::Update { relation_id, old, new } => {
                let rel = self.rel(relation_id)?;
                let (old, key_only) = self.old_row(&rel, old)?;
                Event::Change(RowChange {
                    op: Op::Update,
                    new: Some(self.row(&rel, new)?),
                    old,
                    old_is_key_only: key_only,
                    relation: rel,
                })
            }
            Message::Delete { relation_id, old } => {
                let rel = self.rel(relation_id)?;
                let (old, key_only) = self.old_row(&rel, Some(old))?;
                Event::Change(RowChange {
                    op: Op::Delete,
                    new: None,
                    old,
                    old_is_key_only: key_only,
                    relation: rel,
                })
            }
            Message::Truncate { options, relation_ids } => Event::Truncate {
                relations: relation_ids
                    .into_iter()
                    .map(|id| self.rel(id))
                    .collect::<Result<_, _>>()?,
                cascade: options & 1 == 1,
                restart_identity: options & 2 == 2,
            },
        }))
    }

    fn rel(&self, id: u32) -> Result<Arc<Relation>, EventError> {
        self.relations.get(&id).cloned().ok_or(EventError::UnknownRelation(id))
    }

    fn old_row(
        &self,
        rel: &Arc<Relation>,
        old: Option<OldTuple>,
    ) -> Result<(Option<Row>, bool), EventError> {
        Ok(match old {
            None => (None, false),
            Some(OldTuple::Key(t)) => (Some(self.row(rel, t)?), true),
            Some(OldTuple::Full(t)) => (Some(self.row(rel, t)?), false),
        })
    }

    fn row(&self, rel: &Arc<Relation>, tuple: Tuple) -> Result<Row, EventError> {
        if tuple.0.len() != rel.columns.len() {
            return Err(EventError::ColumnCount {
                relation: rel.name.clone(),
                got: tuple.0.len(),
                expected: rel.columns.len(),
            });
        }
        let values = tuple
            .0
            .into_iter()
            .zip(&rel.columns)
            .map(|(cell, col)| match cell {
                Cell::Null => Value::Null,
                Cell::Unchanged => Value::Unchanged,
                Cell::Text(b) => {
                    Value::from_text(col.type_oid, &cell_text(&b), &|o| self.enums.contains(&o))
                }
                // Never requested (the stream asks for text); kept as bytes all the same.
                Cell::Binary(b) => Value::Bytes(b.to_vec()),
            })
            .collect();
        Ok(Row { relation: rel.clone(), values })
    }
}
