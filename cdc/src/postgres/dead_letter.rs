//! The dead-letter queue's one writer, for both directions: one pending row per problem
//! (direction, table, row, code; migration 0007), payloads capped.

use serde_json::{json, Value};

/// Stored payloads are capped at this many bytes of JSON; the original size is kept.
pub const PAYLOAD_CAP_BYTES: usize = 16 * 1024;

/// Which way the failed change was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Where a dead letter stands (the column's CHECK constraint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Status {
    /// Waiting for a fix, a replay or a discard.
    Pending,
    /// Resolved: a later write of its row succeeded, or a replay did.
    Replayed,
    /// Given up on by an operator (kept).
    Discarded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Replayed => "replayed",
            Status::Discarded => "discarded",
        }
    }
}

/// A change that could not be synced.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Whose: inbound ones are always Airtable's.
    pub destination: crate::destination::Target,
    pub direction: Direction,
    pub table: Option<String>,
    pub pg_id: Option<uuid::Uuid>,
    pub record_id: Option<String>,
    pub operation: &'static str,
    pub payload: Value,
    pub code: String,
    pub message: String,
    pub attempts: i32,
}

/// A payload as stored: whole when small, else a preview with its size.
pub fn capped(payload: &Value) -> (Value, Option<i32>) {
    let text = payload.to_string();
    if text.len() <= PAYLOAD_CAP_BYTES {
        return (payload.clone(), None);
    }
    let mut end = PAYLOAD_CAP_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let size = i32::try_from(text.len()).unwrap_or(i32::MAX);
    (json!({ "truncated": true, "bytes": size, "preview": &text[..end] }), Some(size))
}

/// Records `d`, or, when its problem is already pending, bumps that row's attempts and keeps
/// the latest error and payload. Returns whether a new row was added.
pub async fn add<'e, E: sqlx::PgExecutor<'e>>(db: E, d: &DeadLetter) -> sqlx::Result<bool> {
    let (payload, bytes) = capped(&d.payload);
    let added: bool = sqlx::query_scalar(
        "INSERT INTO sync_dead_letter (direction, table_name, pg_id, airtable_record_id, operation, payload, payload_bytes, error_code, error_message, attempts, destination)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (destination, direction, (coalesce(table_name, '')), problem_key, error_code) WHERE status = 'pending'
         DO UPDATE SET attempts = sync_dead_letter.attempts + EXCLUDED.attempts,
                       last_failed_at = now(),
                       error_message = EXCLUDED.error_message,
                       operation = EXCLUDED.operation,
                       payload = EXCLUDED.payload,
                       payload_bytes = EXCLUDED.payload_bytes
         RETURNING xmax = 0",
    )
    .bind(d.direction.as_str())
    .bind(&d.table)
    .bind(d.pg_id)
    .bind(&d.record_id)
    .bind(d.operation)
    .bind(&payload)
    .bind(bytes)
    .bind(&d.code)
    .bind(&d.message)
    .bind(d.attempts.max(1))
    .bind(d.destination.as_str())
    .fetch_one(db)
    .await?;
    let (direction, destination) = (d.direction.as_str(), d.destination.as_str());
    if added {
        metrics::counter!("sync_dlq_added_total", "direction" => direction, "destination" => destination).increment(1);
    } else {
        metrics::counter!("sync_dlq_repeats_total", "direction" => direction, "destination" => destination).increment(1);
    }
    Ok(added)
}

/// Resolves the pending outbound dead letters of rows that were just written (a later
/// successful write of a row fixes whatever was wrong with it).
pub async fn resolve_rows<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    destination: crate::destination::Target,
    table: &str,
    ids: &[uuid::Uuid],
) -> sqlx::Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE sync_dead_letter SET status = 'replayed', resolved_at = now()
          WHERE direction = 'outbound' AND status = 'pending' AND table_name = $1 AND pg_id = ANY($2)
            AND destination = $3",
    )
    .bind(table)
    .bind(ids)
    .bind(destination.as_str())
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_payloads_are_capped_with_their_size() {
        let small = json!({ "a": 1 });
        assert_eq!(capped(&small), (small.clone(), None));
        let big = json!({ "text": "é".repeat(PAYLOAD_CAP_BYTES) });
        let (stored, bytes) = capped(&big);
        let original = big.to_string().len();
        assert_eq!(bytes, Some(original as i32));
        assert_eq!(stored["truncated"], true);
        assert_eq!(stored["bytes"], original);
        let preview = stored["preview"].as_str().expect("preview");
        assert!(preview.len() <= PAYLOAD_CAP_BYTES && preview.len() > PAYLOAD_CAP_BYTES - 4);
        assert!(big.to_string().starts_with(preview));
    }
}
