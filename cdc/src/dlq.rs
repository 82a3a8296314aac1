//! `cdc dlq …`: operators look at what could not be synced and send it again. Replays are
//! outbox intents, so they travel the replication stream in order, under the same
//! checkpoint as everything else.

use crate::postgres::dead_letter::{Direction, Status};
use schema::outbox::Intent;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetterSummary {
    pub id: i64,
    pub destination: String,
    pub direction: Direction,
    pub table_name: Option<String>,
    pub pg_id: Option<Uuid>,
    pub operation: String,
    pub error_code: String,
    pub attempts: i32,
    pub status: Status,
    pub first_failed_at: chrono::DateTime<chrono::Utc>,
}

/// Why an operator's dead-letter command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Mapping(String),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
}

pub async fn list(
    pool: &PgPool,
    all: bool,
    limit: i64,
) -> Result<Vec<DeadLetterSummary>, DlqError> {
    Ok(sqlx::query_as(
        "SELECT id, destination, direction, table_name, pg_id, operation, error_code, attempts, status, first_failed_at
         FROM sync_dead_letter WHERE $1 OR status = 'pending' ORDER BY id LIMIT $2",
    )
    .bind(all)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn show(pool: &PgPool, id: i64) -> Result<Value, DlqError> {
    let row: Option<Value> =
        sqlx::query_scalar("SELECT to_jsonb(d) FROM sync_dead_letter d WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.ok_or_else(|| DlqError::NotFound(format!("no dead letter {id}")))
}

/// A dead letter (as `show` returns it) for people: what failed, how often, and the start of
/// its payload.
pub fn summary(d: &Value) -> String {
    let field = |k: &str| match &d[k] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let payload = d["payload"].to_string();
    let stored = payload.len();
    let size = match d["payload_bytes"].as_i64() {
        Some(original) => format!("{stored} of {original} bytes stored (capped)"),
        None => format!("{stored} bytes"),
    };
    let preview: String = payload.chars().take(400).collect();
    let more = if preview.len() < payload.len() { " …" } else { "" };
    format!(
        "dead letter {} ({})\n\
         destination {}\n\
         direction   {}\n\
         table       {}\n\
         row         pg id {}, Airtable record {}\n\
         operation   {}\n\
         error       {}: {}\n\
         attempts    {} (first failed {}, last failed {})\n\
         payload     {size}; `--full` prints it\n\
         \x20           {preview}{more}\n",
        field("id"),
        field("status"),
        field("destination"),
        field("direction"),
        field("table_name"),
        field("pg_id"),
        field("airtable_record_id"),
        field("operation"),
        field("error_code"),
        field("error_message"),
        field("attempts"),
        field("first_failed_at"),
        field("last_failed_at"),
    )
}

/// Queues replays of pending dead letters (`ids`, or every pending one); returns how many.
/// Outbound ones go through the outbox. Inbound ones are re-read from Airtable: their
/// tables' poll checkpoints are dropped, so the next poll is a full reconcile, and a dead
/// letter resolves itself once its record applies (after a fix in Airtable, or here).
pub async fn replay(pool: &PgPool, ids: Option<&[i64]>) -> Result<u64, DlqError> {
    let inbound = sqlx::query_scalar::<_, i64>(
        "WITH d AS (SELECT id, table_name FROM sync_dead_letter WHERE status = 'pending' AND direction = 'inbound' AND table_name IS NOT NULL AND ($1::bigint[] IS NULL OR id = ANY($1))),
              cleared AS (DELETE FROM sync_checkpoint WHERE name IN (SELECT 'inbound.poll.' || table_name FROM d))
         SELECT count(*) FROM d",
    )
    .bind(ids)
    .fetch_one(pool)
    .await?;
    let result = sqlx::query(
        "INSERT INTO sync_outbox (kind, table_name, pg_id, payload)
         SELECT $2, coalesce(table_name, ''), pg_id, jsonb_build_object('dead_letter_id', id)
         FROM sync_dead_letter WHERE status = 'pending' AND direction = 'outbound' AND ($1::bigint[] IS NULL OR id = ANY($1))
         ORDER BY id",
    )
    .bind(ids)
    .bind(Intent::REPLAY)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() + inbound as u64)
}

pub async fn discard(pool: &PgPool, id: i64) -> Result<(), DlqError> {
    let done = sqlx::query("UPDATE sync_dead_letter SET status = 'discarded', resolved_at = now() WHERE id = $1 AND status = 'pending'")
        .bind(id)
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(DlqError::NotFound(format!("no pending dead letter {id}")));
    }
    Ok(())
}
