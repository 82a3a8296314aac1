//! Backfills: the one path that copies rows that already exist to Airtable. It runs when the
//! slot is created on a database that holds rows, when the mapping gains a table or a column,
//! on `cdc backfill` (and its alias `cdc resync`), after `cdc slot recover`, and for what
//! `cdc verify --repair` re-sends.
//!
//! The technique is DBLog's (Netflix; Debezium's incremental snapshots): a job reads its table
//! in primary-key chunks, and each chunk read is bracketed by a low and a high watermark
//! written into the replication stream (`pg_logical_emit_message`). A row the stream shows
//! changing between the two watermarks is dropped from the chunk, because the stream carries
//! its newer state; what is left is written when the stream reaches the high watermark. So a
//! chunk can neither overwrite a newer change nor miss one, and live changes never wait
//! behind more than one chunk. A job's last key is saved before the slot is confirmed past
//! its chunk: a killed daemon resumes at the next chunk.
//!
//! Here: the jobs (`sync_backfill`) and their SQL ([`store`]), the watermark messages
//! ([`Watermark`]), what a start queues ([`queue`]) and progress for people ([`status`]).
//! The Airtable sink runs the chunks (`destination::airtable::backfill`).

pub mod queue;
pub mod status;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A backfill job's id (`sync_backfill.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a job exists (the table's CHECK constraint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The slot was created on a database that already held rows.
    Initial,
    /// The mapping gained the table, or some of its columns.
    Mapping,
    /// An operator asked (`cdc backfill`, `cdc resync`).
    Requested,
    /// The slot was re-created (`cdc slot recover`): changes may have been missed.
    SlotRecover,
    /// `cdc verify --repair` re-sends what differs.
    Repair,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Initial => "initial",
            Reason::Mapping => "mapping",
            Reason::Requested => "requested",
            Reason::SlotRecover => "slot_recover",
            Reason::Repair => "repair",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Initial, Self::Mapping, Self::Requested, Self::SlotRecover, Self::Repair]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Running, Self::Done, Self::Cancelled]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

/// One job, as `sync_backfill` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: JobId,
    /// Whose job it is: the daemon of that destination runs it.
    pub destination: crate::destination::Target,
    pub table: String,
    /// Only these mapped columns; None = every mapped column.
    pub columns: Option<Vec<String>>,
    pub predicate: Option<String>,
    pub reason: Reason,
    pub state: JobState,
    /// Every row with a smaller or equal id is done.
    pub last_key: Option<Uuid>,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    /// Delete Airtable records whose row is gone, after the last chunk.
    pub reconcile: bool,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub destination: crate::destination::Target,
    pub table: String,
    pub columns: Option<Vec<String>>,
    pub predicate: Option<String>,
    pub reason: Reason,
    pub reconcile: bool,
}

impl NewJob {
    /// Every row and mapped column of `table`.
    pub fn whole(table: impl Into<String>, reason: Reason) -> Self {
        Self {
            destination: crate::destination::Target::Airtable,
            table: table.into(),
            columns: None,
            predicate: None,
            reason,
            reconcile: false,
        }
    }

    /// The same job for `destination`'s daemon.
    pub fn to(self, destination: crate::destination::Target) -> Self {
        Self { destination, ..self }
    }

    /// Every mapped column of the rows `ids` of `table` (the whole table past 1,000 ids: a
    /// predicate stays small, and a chunked read of everything costs no more).
    pub fn rows(table: impl Into<String>, ids: &[Uuid], reason: Reason) -> Self {
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let predicate = (ids.len() <= 1000).then(|| {
            let list: Vec<String> = ids.iter().map(Uuid::to_string).collect();
            format!("id = ANY('{{{}}}'::uuid[])", list.join(","))
        });
        Self { predicate, ..Self::whole(table, reason) }
    }
}

/// A chunk's watermark, as written into the stream: which chunk, and which side of its read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub chunk: Uuid,
    pub mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// Written before the chunk is read.
    Low,
    /// Written after it was read.
    High,
}

impl Watermark {
    /// The logical message prefix of watermarks.
    pub const PREFIX: &'static str = "coach.backfill";

    /// The watermark a stream message holds, if it is one.
    pub fn from_message(prefix: &str, content: &[u8]) -> Option<Self> {
        (prefix == Self::PREFIX).then(|| serde_json::from_slice(content).ok()).flatten()
    }

    pub fn to_content(self) -> String {
        serde_json::json!(self).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_round_trip_and_other_messages_are_not_watermarks() {
        let w = Watermark { chunk: Uuid::new_v4(), mark: Mark::High };
        assert_eq!(Watermark::from_message(Watermark::PREFIX, w.to_content().as_bytes()), Some(w));
        assert_eq!(Watermark::from_message("other", w.to_content().as_bytes()), None);
        assert_eq!(Watermark::from_message(Watermark::PREFIX, b"{not json"), None);
    }

    #[test]
    fn reasons_and_states_parse_what_they_print() {
        for r in [
            Reason::Initial,
            Reason::Mapping,
            Reason::Requested,
            Reason::SlotRecover,
            Reason::Repair,
        ] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        for s in [JobState::Pending, JobState::Running, JobState::Done, JobState::Cancelled] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
    }
}
