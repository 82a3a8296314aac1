//! What the stream hands a destination: transactions of typed row changes, in commit order.

use super::value::Value;
use bytes::Bytes;
use chrono::{DateTime, Utc};
pub use pgwire_replication::Lsn;
use serde_json::{Map, Value as Json};
use std::sync::Arc;

/// A published table as the stream last described it (a later Relation message for the same
/// id, e.g. after ALTER TABLE, replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
}

impl Relation {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// One row's values, aligned with its relation's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub relation: Arc<Relation>,
    pub values: Vec<Value>,
}

impl Row {
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.relation.column_index(column).and_then(|i| self.values.get(i))
    }

    /// (column, value) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.relation.columns.iter().map(|c| c.name.as_str()).zip(self.values.iter())
    }

    /// Replica-identity columns and their values.
    pub fn key(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.relation
            .columns
            .iter()
            .zip(self.values.iter())
            .filter(|(c, _)| c.key)
            .map(|(c, v)| (c.name.as_str(), v))
    }

    /// Columns with values as JSON; unchanged TOAST columns are left out, not nulled.
    pub fn to_json(&self) -> Map<String, Json> {
        self.iter()
            .filter(|(_, v)| **v != Value::Unchanged)
            .map(|(k, v)| (k.to_owned(), v.to_json()))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Insert,
    Update,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One row change.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub op: Op,
    pub relation: Arc<Relation>,
    /// Insert and update: the new row (unchanged TOAST columns are `Value::Unchanged`).
    pub new: Option<Row>,
    /// Update (with replica identity FULL or a changed key) and delete: the old row. With a
    /// key-only old tuple, non-key columns are `Value::Null` placeholders, not values:
    /// read `old_is_key_only`.
    pub old: Option<Row>,
    pub old_is_key_only: bool,
}

impl RowChange {
    /// The row's key: from the old tuple for deletes, else from the new row.
    pub fn key(&self) -> Vec<(&str, &Value)> {
        match (&self.old, &self.new, self.op) {
            (Some(old), _, Op::Delete) => old.key().collect(),
            (_, Some(new), _) => new.key().collect(),
            (Some(old), None, _) => old.key().collect(),
            (None, None, _) => Vec::new(),
        }
    }

    /// The row's `id` when it is a uuid (the old tuple's for deletes): every mapped table's
    /// key.
    pub fn uuid_id(&self) -> Option<uuid::Uuid> {
        let row = if self.op == Op::Delete { self.old.as_ref() } else { self.new.as_ref() };
        match row?.get("id") {
            Some(Value::Uuid(u)) => Some(*u),
            _ => None,
        }
    }
}

/// The stream's events, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Begin {
        xid: u32,
        final_lsn: Lsn,
        commit_time: DateTime<Utc>,
    },
    Change(RowChange),
    Truncate {
        relations: Vec<Arc<Relation>>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A logical message (`pg_logical_emit_message`). Transactional ones arrive inside their
    /// transaction; others stand alone and are acknowledged by their own `lsn`.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Bytes,
    },
    Commit {
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_time: DateTime<Utc>,
    },
}

/// PostgreSQL timestamps count microseconds from 2000-01-01.
pub fn pg_time(micros: i64) -> DateTime<Utc> {
    const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;
    DateTime::from_timestamp_micros(micros.saturating_add(PG_EPOCH_UNIX_MICROS)).unwrap_or_default()
}
