//! What the Airtable sink reads and writes in Postgres: the id map, current rows, the
//! progress view, dead letters, the outbox. Table names come from the validated mapping and
//! are quoted all the same.

use crate::postgres::{
    dead_letter::{self, DeadLetter},
    quote_ident,
};
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// The checkpoint saying a whole reconcile is owed.
const RECONCILE_OWED: &str = "outbound.reconcile_owed";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// pg id -> Airtable record id, for the ids that have one.
    pub async fn record_ids(
        &self,
        table: &str,
        ids: &[Uuid],
    ) -> sqlx::Result<HashMap<Uuid, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, String)> = sqlx::query_as("SELECT pg_id, airtable_record_id FROM airtable_id_map WHERE table_name = $1 AND pg_id = ANY($2)")
            .bind(table)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn save_record_ids(&self, table: &str, pairs: &[(Uuid, String)]) -> sqlx::Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let (ids, recs): (Vec<Uuid>, Vec<String>) = pairs.iter().cloned().unzip();
        sqlx::query(
            "INSERT INTO airtable_id_map (table_name, pg_id, airtable_record_id)
             SELECT $1, * FROM unnest($2::uuid[], $3::text[])
             ON CONFLICT (table_name, pg_id) DO UPDATE SET airtable_record_id = EXCLUDED.airtable_record_id
             WHERE airtable_id_map.airtable_record_id <> EXCLUDED.airtable_record_id",
        )
        .bind(table)
        .bind(&ids)
        .bind(&recs)
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    pub async fn forget_record_ids(&self, table: &str, ids: &[Uuid]) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM airtable_id_map WHERE table_name = $1 AND pg_id = ANY($2)")
            .bind(table)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Every mapped pg id of a table (truncate).
    pub async fn all_mapped(&self, table: &str) -> sqlx::Result<Vec<(Uuid, String)>> {
        sqlx::query_as(
            "SELECT pg_id, airtable_record_id FROM airtable_id_map WHERE table_name = $1",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
    }

    /// Current rows as JSON objects (to_jsonb), by id; missing ids are absent.
    pub async fn rows(
        &self,
        table: &str,
        ids: &[Uuid],
    ) -> sqlx::Result<HashMap<Uuid, Map<String, Value>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql =
            format!("SELECT t.id, to_jsonb(t) FROM {} t WHERE t.id = ANY($1)", quote_ident(table));
        let rows: Vec<(Uuid, Value)> = sqlx::query_as(&sql).bind(ids).fetch_all(&self.pool).await?;
        Ok(objects(rows))
    }

    /// Every id of a table (reconcile).
    /// Up to `n` random rows of `table`, each with its Airtable record id when mapped.
    pub async fn sample_mapped(
        &self,
        table: &str,
        n: usize,
    ) -> sqlx::Result<Vec<(Uuid, Option<String>)>> {
        sqlx::query_as(&format!(
            "SELECT t.id, m.airtable_record_id FROM (SELECT id FROM {} ORDER BY random() LIMIT $2) t
             LEFT JOIN airtable_id_map m ON m.table_name = $1 AND m.pg_id = t.id",
            quote_ident(table)
        ))
        .bind(table)
        .bind(n as i64)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn all_ids(&self, table: &str) -> sqlx::Result<Vec<Uuid>> {
        sqlx::query_scalar(&format!("SELECT id FROM {}", quote_ident(table)))
            .fetch_all(&self.pool)
            .await
    }

    /// A derived view's rows (e.g. program_progress), by the id of the row each describes.
    pub async fn derived(
        &self,
        view: &str,
        key: &str,
        ids: &[Uuid],
    ) -> sqlx::Result<HashMap<Uuid, Map<String, Value>>> {
        let sql = format!(
            "SELECT v.{key}, to_jsonb(v) FROM {view} v WHERE v.{key} = ANY($1)",
            key = quote_ident(key),
            view = quote_ident(view)
        );
        let rows: Vec<(Uuid, Value)> = sqlx::query_as(&sql).bind(ids).fetch_all(&self.pool).await?;
        Ok(objects(rows))
    }

    pub async fn dead_letter(&self, d: &DeadLetter) -> sqlx::Result<bool> {
        dead_letter::add(&self.pool, d).await
    }

    /// Resolves pending outbound dead letters of rows just written.
    pub async fn resolve_rows(&self, table: &str, ids: &[Uuid]) -> sqlx::Result<u64> {
        dead_letter::resolve_rows(&self.pool, crate::destination::Target::Airtable, table, ids)
            .await
    }

    /// Pending Airtable dead letters (the mirror's are its daemon's): (all, outbound).
    pub async fn pending_dead_letters(&self) -> sqlx::Result<(i64, i64)> {
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE direction = 'outbound')
               FROM sync_dead_letter WHERE status = 'pending' AND destination = 'airtable'",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// (table, pg id, operation) of a pending outbound dead letter.
    pub async fn dead_letter_row(
        &self,
        id: i64,
    ) -> sqlx::Result<Option<(Option<String>, Option<Uuid>, String)>> {
        sqlx::query_as("SELECT table_name, pg_id, operation FROM sync_dead_letter WHERE id = $1 AND direction = 'outbound' AND destination = 'airtable' AND status = 'pending'")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    pub async fn resolve_dead_letter(&self, id: i64) -> sqlx::Result<()> {
        sqlx::query("UPDATE sync_dead_letter SET status = 'replayed', resolved_at = now() WHERE id = $1 AND status = 'pending'").bind(id).execute(&self.pool).await.map(|_| ())
    }

    /// A replay failed again: count the attempt and keep the latest error.
    pub async fn retry_failed(&self, id: i64, code: &str, message: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE sync_dead_letter SET attempts = attempts + 1, last_failed_at = now(), error_code = $2, error_message = $3 WHERE id = $1")
            .bind(id)
            .bind(code)
            .bind(message)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// The slot's leader epoch (HA): a leader checks it is still its own before a flush.
    pub async fn leader_epoch(&self, slot: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT epoch FROM sync_leader WHERE slot_name = $1")
            .bind(slot)
            .fetch_optional(&self.pool)
            .await
    }

    /// Whether a whole reconcile is owed (an unclean stop was seen and no whole reconcile
    /// finished since): a leader stepping down mid-way leaves it to its successor.
    pub async fn reconcile_owed(&self) -> sqlx::Result<bool> {
        let v = crate::postgres::checkpoint::read(&self.pool, RECONCILE_OWED).await?;
        Ok(v.is_some_and(|v| v == Value::Bool(true)))
    }

    pub async fn set_reconcile_owed(&self, owed: bool) -> sqlx::Result<()> {
        crate::postgres::checkpoint::write(&self.pool, RECONCILE_OWED, &Value::Bool(owed)).await
    }

    /// The write watermark (see AirtableDestination): 0/0 when never written.
    pub async fn possibly_written(&self) -> sqlx::Result<pgwire_replication::Lsn> {
        let v: Option<String> = sqlx::query_scalar("SELECT value->>'lsn' FROM sync_checkpoint WHERE name = 'outbound.possibly_written_lsn'").fetch_optional(&self.pool).await?.flatten();
        Ok(v.and_then(|s| pgwire_replication::Lsn::parse(&s).ok())
            .unwrap_or(pgwire_replication::Lsn::ZERO))
    }

    pub async fn set_possibly_written(&self, lsn: pgwire_replication::Lsn) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO sync_checkpoint (name, value) VALUES ('outbound.possibly_written_lsn', jsonb_build_object('lsn', $1::text))
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(lsn.to_string())
        .execute(&self.pool)
        .await
        .map(|_| ())
    }

    /// Delivered outbox rows are deleted so the table never piles up.
    pub async fn purge_outbox(&self, ids: &[i64]) -> sqlx::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM sync_outbox WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}

/// Rows of `(id, to_jsonb(row))` as id -> object.
fn objects(rows: Vec<(Uuid, Value)>) -> HashMap<Uuid, Map<String, Value>> {
    rows.into_iter()
        .filter_map(|(id, v)| match v {
            Value::Object(m) => Some((id, m)),
            _ => None,
        })
        .collect()
}
