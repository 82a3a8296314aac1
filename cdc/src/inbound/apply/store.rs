//! The inbound side's own SQL: checkpoints, delivery keys, the id map, parked records.

use super::*;
use schema::mapping::TableId;

impl Applier {
    /// Which of `keys` (delivery keys of `source`) were applied before.
    pub async fn seen_events(
        &self,
        source: &str,
        keys: &[String],
    ) -> sqlx::Result<HashSet<String>> {
        let seen: Vec<String> = sqlx::query_scalar(
            "SELECT event_key FROM sync_inbox_events WHERE source = $1 AND event_key = ANY($2)",
        )
        .bind(source)
        .bind(keys)
        .fetch_all(&self.pool)
        .await?;
        Ok(seen.into_iter().collect())
    }

    /// (record id, pg id) of the records of `table` among `records` that have a row.
    pub async fn mapped_records(
        &self,
        table: &str,
        records: &[String],
    ) -> sqlx::Result<Vec<(String, Uuid)>> {
        sqlx::query_as(
            "SELECT airtable_record_id, pg_id FROM airtable_id_map WHERE table_name = $1 AND airtable_record_id = ANY($2)",
        )
        .bind(table)
        .bind(records)
        .fetch_all(&self.pool)
        .await
    }

    /// Of `(table, record)` pairs about to be applied from a partial change, those that must
    /// be read whole first: records Postgres has no row for, and records with a pending
    /// inbound dead letter (their parked state is not in Postgres either).
    pub async fn needing_whole_records(
        &self,
        records: &[(TableId, String)],
    ) -> sqlx::Result<Vec<(TableId, String)>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let tables: Vec<&str> =
            records.iter().map(|(t, _)| self.mapping.tables[*t].table.name).collect();
        let ids: Vec<&str> = records.iter().map(|(_, r)| r.as_str()).collect();
        let whole: Vec<i32> = sqlx::query_scalar(
            "SELECT (n - 1)::int FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(t, rid, n)
              WHERE NOT EXISTS (SELECT 1 FROM airtable_id_map m WHERE m.table_name = r.t AND m.airtable_record_id = r.rid)
                 OR EXISTS (SELECT 1 FROM sync_dead_letter d WHERE d.direction = 'inbound' AND d.status = 'pending'
                             AND d.table_name = r.t AND d.airtable_record_id = r.rid)",
        )
        .bind(&tables)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(whole.into_iter().filter_map(|i| records.get(i as usize).cloned()).collect())
    }

    /// A checkpoint's value.
    pub async fn checkpoint(&self, name: &str) -> sqlx::Result<Option<Value>> {
        crate::postgres::checkpoint::read(&self.pool, name).await
    }

    /// Drops delivery keys older than `days` (redeliveries that late are impossible: the
    /// cursor moved on, and Airtable keeps payloads 7 days).
    pub async fn purge_events(&self, days: i32) -> sqlx::Result<u64> {
        let started = Instant::now();
        let n = sqlx::query(
            "DELETE FROM sync_inbox_events WHERE applied_at < now() - make_interval(days => $1)",
        )
        .bind(days)
        .execute(&self.pool)
        .await?
        .rows_affected();
        tracing::debug!(purged = n, elapsed = ?started.elapsed(), "purged old inbox events");
        Ok(n)
    }
}

pub(super) async fn map_record<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    table: &str,
    id: Uuid,
    record: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO airtable_id_map (table_name, pg_id, airtable_record_id) VALUES ($1, $2, $3)
         ON CONFLICT (table_name, pg_id) DO UPDATE SET airtable_record_id = EXCLUDED.airtable_record_id",
    )
    .bind(table)
    .bind(id)
    .bind(record)
    .execute(db)
    .await
    .map(|_| ())
}

pub(super) async fn park<'e, E: sqlx::PgExecutor<'e>>(db: E, p: &Parked) -> sqlx::Result<()> {
    tracing::warn!(table = ?p.table, record = ?p.record_id, code = %p.code, message = %p.message, "inbound change parked in the dead-letter queue");
    let d = DeadLetter {
        destination: crate::destination::Target::Airtable,
        direction: Direction::Inbound,
        table: p.table.clone(),
        pg_id: None,
        record_id: p.record_id.clone(),
        operation: p.operation,
        payload: p.payload.clone(),
        code: p.code.clone(),
        message: p.message.clone(),
        attempts: 1,
    };
    dead_letter::add(db, &d).await.map(|_| ())
}

/// One table's queued stamps: how many, and how long the oldest has waited.
#[derive(Debug)]
pub struct StampQueue {
    pub table: String,
    pub count: i64,
    pub waited: std::time::Duration,
}

impl Applier {
    pub async fn stamp_queue(&self) -> sqlx::Result<Vec<StampQueue>> {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT table_name, count(*), extract(epoch FROM now() - min(queued_at))::float8
             FROM sync_pending_stamps GROUP BY table_name ORDER BY table_name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(table, count, waited)| StampQueue {
                table,
                count,
                waited: std::time::Duration::from_secs_f64(waited.max(0.0)),
            })
            .collect())
    }

    /// The oldest `n` queued stamps of `table`: (record id, pg id).
    pub async fn stamps(&self, table: &str, n: usize) -> sqlx::Result<Vec<(String, Uuid)>> {
        sqlx::query_as(
            "SELECT airtable_id, pg_id FROM sync_pending_stamps WHERE table_name = $1
             ORDER BY queued_at, airtable_id LIMIT $2",
        )
        .bind(table)
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await
    }

    /// Stamps done (written, or needing no write): gone from the queue unless queued again
    /// with another pg id meanwhile.
    pub async fn stamps_written(&self, table: &str, done: &[(String, Uuid)]) -> sqlx::Result<()> {
        let (records, ids): (Vec<String>, Vec<Uuid>) = done.iter().cloned().unzip();
        sqlx::query(
            "DELETE FROM sync_pending_stamps s USING unnest($2::text[], $3::uuid[]) AS d(rec, id)
             WHERE s.table_name = $1 AND s.airtable_id = d.rec AND s.pg_id = d.id",
        )
        .bind(table)
        .bind(&records)
        .bind(&ids)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// Stamps of a table the mapping no longer has.
    pub async fn drop_stamps(&self, table: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM sync_pending_stamps WHERE table_name = $1")
            .bind(table)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Parks one record outside a batch (a refused stamp).
    pub async fn park_one(&self, p: &Parked) -> sqlx::Result<()> {
        park(&self.pool, p).await
    }

    /// Queues stamps outside a batch (records mapped earlier whose pg id never reached
    /// Airtable, found by a reconcile).
    pub async fn queue_stamps(&self, stamps: &[(TableId, String, Uuid)]) -> sqlx::Result<()> {
        queue_stamps(&self.pool, &self.mapping, stamps).await
    }
}

/// Queues pg ids to write into the records their rows were made from (a record queued
/// again keeps its newest pg id).
pub(crate) async fn queue_stamps<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    mapping: &Mapping,
    stamps: &[(TableId, String, Uuid)],
) -> sqlx::Result<()> {
    if stamps.is_empty() {
        return Ok(());
    }
    let tables: Vec<&str> = stamps.iter().map(|(t, _, _)| mapping.tables[*t].table.name).collect();
    let records: Vec<&str> = stamps.iter().map(|(_, r, _)| r.as_str()).collect();
    let ids: Vec<Uuid> = stamps.iter().map(|(_, _, id)| *id).collect();
    sqlx::query(
        "INSERT INTO sync_pending_stamps (table_name, airtable_id, pg_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
         ON CONFLICT (table_name, airtable_id) DO UPDATE SET pg_id = EXCLUDED.pg_id",
    )
    .bind(&tables)
    .bind(&records)
    .bind(&ids)
    .execute(db)
    .await
    .map(|_| ())
}
