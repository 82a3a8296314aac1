//! `sync_outbox` intents: what the API and the operator commands ask the daemon to send,
//! through the replication stream (so in order, under the slot's checkpoint). The kinds are
//! the table's CHECK constraint.

use serde_json::{Map, Value};
use uuid::Uuid;

/// One intent, as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Re-send a row's current state, or (without an id) a whole table's.
    Resync { table: String, id: Option<Uuid> },
    /// Re-send a program's derived progress (written by older API builds: the sync now
    /// derives it from the stream).
    Progress { table: String, id: Uuid },
    /// Backfill jobs were queued or cancelled (`sync_backfill`): read them again.
    Backfill,
    /// Send a dead letter's row again.
    Replay { dead_letter: i64 },
}

impl Intent {
    pub const RESYNC: &'static str = "resync";
    pub const PROGRESS: &'static str = "progress";
    pub const REPLAY: &'static str = "replay";
    pub const BACKFILL: &'static str = "backfill";

    /// The intent an outbox row (as JSON) holds; None for a kind this build does not know.
    pub fn from_row(row: &Map<String, Value>) -> Option<Intent> {
        let table = row.get("table_name").and_then(Value::as_str).unwrap_or("").to_owned();
        let id = row.get("pg_id").and_then(Value::as_str).and_then(|s| s.parse::<Uuid>().ok());
        match row.get("kind").and_then(Value::as_str)? {
            Self::RESYNC => Some(Intent::Resync { table, id }),
            Self::PROGRESS => Some(Intent::Progress { table, id: id? }),
            Self::REPLAY => Some(Intent::Replay {
                dead_letter: row.get("payload")?.get("dead_letter_id")?.as_i64()?,
            }),
            Self::BACKFILL => Some(Intent::Backfill),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn rows_become_intents() {
        let id = "00000000-0000-4000-8000-000000000801";
        assert_eq!(
            Intent::from_row(&row(
                json!({ "kind": "progress", "table_name": "programs", "pg_id": id })
            )),
            Some(Intent::Progress { table: "programs".into(), id: id.parse().expect("uuid") })
        );
        assert_eq!(
            Intent::from_row(&row(json!({ "kind": "resync", "table_name": "users" }))),
            Some(Intent::Resync { table: "users".into(), id: None })
        );
        assert_eq!(
            Intent::from_row(&row(json!({ "kind": "replay", "payload": { "dead_letter_id": 7 } }))),
            Some(Intent::Replay { dead_letter: 7 })
        );
        assert_eq!(
            Intent::from_row(&row(json!({ "kind": "backfill", "payload": { "jobs": [3] } }))),
            Some(Intent::Backfill)
        );
        assert_eq!(Intent::from_row(&row(json!({ "kind": "teleport" }))), None);
        assert_eq!(
            Intent::from_row(&row(json!({ "kind": "progress", "table_name": "programs" }))),
            None
        );
    }
}
