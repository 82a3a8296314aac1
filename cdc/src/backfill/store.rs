//! The jobs' SQL (`sync_backfill`), the watermark writes and the chunk read. Table names come
//! from the validated mapping and are quoted all the same; a predicate was checked when its
//! job was requested and is only ever run in a read-only transaction.

use super::{Job, JobId, JobState, NewJob, Reason, Watermark};
use crate::postgres::quote_ident;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

const COLUMNS: &str = "id, destination, table_name, columns, predicate, reason, state, last_key, rows_done, rows_total, reconcile, requested_at, started_at, finished_at, updated_at";

fn job(row: sqlx::postgres::PgRow) -> sqlx::Result<Job> {
    let text = |name: &str| -> sqlx::Result<String> { row.try_get(name) };
    let bad = |name: &str, v: String| sqlx::Error::Decode(format!("{name} {v:?}").into());
    let reason = text("reason")?;
    let state = text("state")?;
    let destination = text("destination")?;
    Ok(Job {
        id: row.try_get("id")?,
        destination: crate::destination::Target::parse(&destination)
            .ok_or_else(|| bad("destination", destination.clone()))?,
        table: text("table_name")?,
        columns: row.try_get("columns")?,
        predicate: row.try_get("predicate")?,
        reason: Reason::parse(&reason).ok_or_else(|| bad("reason", reason.clone()))?,
        state: JobState::parse(&state).ok_or_else(|| bad("state", state.clone()))?,
        last_key: row.try_get("last_key")?,
        rows_done: row.try_get("rows_done")?,
        rows_total: row.try_get("rows_total")?,
        reconcile: row.try_get("reconcile")?,
        requested_at: row.try_get::<DateTime<Utc>, _>("requested_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Queues `jobs` in one transaction. With `notify`, a running daemon learns of them through
/// the stream (an outbox intent in the same transaction); a daemon that is down finds them
/// when it starts.
pub async fn queue(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    jobs: &[NewJob],
    notify: bool,
) -> sqlx::Result<Vec<JobId>> {
    let mut ids = Vec::with_capacity(jobs.len());
    for j in jobs {
        // The same job queued and not started yet (a request delivered twice) is that job.
        let id: JobId = sqlx::query_scalar(
            "WITH same AS (
                SELECT id FROM sync_backfill
                 WHERE state = 'pending' AND last_key IS NULL AND table_name = $1
                   AND columns IS NOT DISTINCT FROM $2 AND predicate IS NOT DISTINCT FROM $3
                   AND reconcile = $5 AND destination = $6
                 LIMIT 1),
             added AS (
                INSERT INTO sync_backfill (table_name, columns, predicate, reason, reconcile, destination)
                SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM same)
                RETURNING id)
             SELECT id FROM added UNION ALL SELECT id FROM same",
        )
        .bind(&j.table)
        .bind(&j.columns)
        .bind(&j.predicate)
        .bind(j.reason.as_str())
        .bind(j.reconcile)
        .bind(j.destination.as_str())
        .fetch_one(&mut **tx)
        .await?;
        ids.push(id);
    }
    if notify && !ids.is_empty() {
        sqlx::query(
            "INSERT INTO sync_outbox (kind, table_name, payload)
             VALUES ('backfill', '', jsonb_build_object('jobs', $1::bigint[]))",
        )
        .bind(ids.iter().map(|i| i.0).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(ids)
}

/// Queues `jobs` on their own (see [`queue`]).
pub async fn request(pool: &PgPool, jobs: &[NewJob], notify: bool) -> sqlx::Result<Vec<JobId>> {
    let mut tx = pool.begin().await?;
    let ids = queue(&mut tx, jobs, notify).await?;
    tx.commit().await?;
    Ok(ids)
}

/// Whole-table copies to `target` an outbox resync asked for, queued in one transaction.
pub async fn request_whole<T: Into<String>>(
    pool: &PgPool,
    target: crate::destination::Target,
    tables: impl IntoIterator<Item = T>,
) -> sqlx::Result<Vec<JobId>> {
    let jobs: Vec<NewJob> =
        tables.into_iter().map(|t| NewJob::whole(t, Reason::Requested).to(target)).collect();
    request(pool, &jobs, false).await
}

/// `destination`'s pending and running jobs, oldest first.
pub async fn open(
    pool: &PgPool,
    destination: crate::destination::Target,
) -> sqlx::Result<Vec<Job>> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sync_backfill
          WHERE destination = $1 AND state IN ('pending', 'running') ORDER BY id"
    ))
    .bind(destination.as_str())
    .try_map(job)
    .fetch_all(pool)
    .await
}

/// Jobs for `cdc backfill status`: the open ones and the last `recent` finished.
pub async fn list(pool: &PgPool, recent: i64) -> sqlx::Result<Vec<Job>> {
    sqlx::query(&format!(
        "(SELECT {COLUMNS} FROM sync_backfill WHERE state IN ('pending', 'running'))
         UNION ALL
         (SELECT {COLUMNS} FROM sync_backfill WHERE state IN ('done', 'cancelled')
           ORDER BY finished_at DESC LIMIT $1)
         ORDER BY id"
    ))
    .bind(recent)
    .try_map(job)
    .fetch_all(pool)
    .await
}

/// Jobs by id (a CLI following the ones it queued).
pub async fn by_ids(pool: &PgPool, ids: &[JobId]) -> sqlx::Result<Vec<Job>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM sync_backfill WHERE id = ANY($1) ORDER BY id"))
        .bind(ids.iter().map(|i| i.0).collect::<Vec<_>>())
        .try_map(job)
        .fetch_all(pool)
        .await
}

/// A job starts: it is running, and how many rows it has to do is estimated now.
pub async fn start(pool: &PgPool, job: &Job) -> sqlx::Result<i64> {
    let total = count(pool, &job.table, job.predicate.as_deref()).await?;
    sqlx::query(
        "UPDATE sync_backfill SET state = 'running', started_at = coalesce(started_at, now()),
                rows_total = coalesce(rows_total, $2)
          WHERE id = $1 AND state IN ('pending', 'running')",
    )
    .bind(job.id)
    .bind(total)
    .execute(pool)
    .await?;
    Ok(total)
}

/// Starts `job` if it is still pending (its state and row estimate updated in place).
pub async fn start_pending(pool: &PgPool, job: &mut Job) -> sqlx::Result<()> {
    if job.state == JobState::Pending {
        let total = start(pool, job).await?;
        job.state = JobState::Running;
        job.rows_total.get_or_insert(total);
        tracing::info!(job = %job.id, table = %job.table, rows = total, "backfill started");
    }
    Ok(())
}

/// A chunk is in Airtable: every row up to `last_key` is done.
pub async fn advance(pool: &PgPool, id: JobId, last_key: Uuid, rows: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sync_backfill SET last_key = $2, rows_done = rows_done + $3
          WHERE id = $1 AND state = 'running'",
    )
    .bind(id)
    .bind(last_key)
    .bind(rows)
    .execute(pool)
    .await
    .map(|_| ())
}

pub async fn finish(pool: &PgPool, id: JobId) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE sync_backfill SET state = 'done', finished_at = now()
          WHERE id = $1 AND state IN ('pending', 'running')",
    )
    .bind(id)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Cancels open jobs (all of them with None); the daemon drops them at its next chunk.
pub async fn cancel(pool: &PgPool, ids: Option<&[JobId]>) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let ids: Option<Vec<i64>> = ids.map(|i| i.iter().map(|j| j.0).collect());
    let n = sqlx::query(
        "UPDATE sync_backfill SET state = 'cancelled', finished_at = now()
          WHERE state IN ('pending', 'running') AND ($1::bigint[] IS NULL OR id = ANY($1))",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n > 0 {
        sqlx::query("INSERT INTO sync_outbox (kind, table_name) VALUES ('backfill', '')")
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// Rows a job covers.
pub async fn count(pool: &PgPool, table: &str, predicate: Option<&str>) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM {} t WHERE {}", quote_ident(table), filter(predicate));
    let mut tx = read_only(pool).await?;
    let n = sqlx::query_scalar(&sql).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(n)
}

/// Whether `predicate` is a boolean SQL expression over `table`'s columns: planned, never
/// run, in a read-only transaction. The error is Postgres's, naming what is wrong.
pub async fn check_predicate(pool: &PgPool, table: &str, predicate: &str) -> sqlx::Result<()> {
    let sql =
        format!("EXPLAIN SELECT 1 FROM {} t WHERE {}", quote_ident(table), filter(Some(predicate)));
    let mut tx = read_only(pool).await?;
    sqlx::query(&sql).fetch_all(&mut *tx).await?;
    tx.commit().await
}

/// The next chunk of a table after `after`, in key order: (id, row as JSON).
pub async fn chunk(
    pool: &PgPool,
    table: &str,
    predicate: Option<&str>,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<(Uuid, Map<String, Value>)>> {
    let sql = format!(
        "SELECT t.id, to_jsonb(t) FROM {} t WHERE ($1::uuid IS NULL OR t.id > $1) AND {} ORDER BY t.id LIMIT $2",
        quote_ident(table),
        filter(predicate)
    );
    let mut tx = read_only(pool).await?;
    let rows: Vec<(Uuid, Value)> =
        sqlx::query_as(&sql).bind(after).bind(limit).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, v)| match v {
            Value::Object(m) => Some((id, m)),
            _ => None,
        })
        .collect())
}

/// Writes a watermark into the stream, committed on its own (so it takes its place in commit
/// order before the next statement runs). Its commit is flushed whatever the server's
/// synchronous_commit: the stream sends only flushed WAL, and the chunk waits for it.
pub async fn emit(pool: &PgPool, mark: Watermark) -> sqlx::Result<()> {
    sqlx::query("SELECT set_config('synchronous_commit', 'on', true), pg_logical_emit_message(true, $1, $2)")
        .bind(Watermark::PREFIX)
        .bind(mark.to_content())
        .execute(pool)
        .await
        .map(|_| ())
}

fn filter(predicate: Option<&str>) -> String {
    predicate.map_or_else(|| "true".to_owned(), |p| format!("({p})"))
}

/// A read-only transaction (an operator's predicate can change nothing in it).
async fn read_only(pool: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}
