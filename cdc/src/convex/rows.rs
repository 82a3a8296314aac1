//! Rows read from Postgres for the mirror (backfill chunks, re-reads, parity), decoded exactly
//! as the stream decodes them: each column's text output through the stream's own value
//! parser, so a row has one JSON form whichever way it reached Convex.

use crate::{postgres::quote_ident, replication::Value as PgValue};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, Row};
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use uuid::Uuid;

/// A row's id and its mirrored columns as JSON.
pub type DocRow = (Uuid, Map<String, Value>);

pub struct RowReader {
    pool: PgPool,
    /// table -> column -> type oid.
    types: Mutex<HashMap<String, Arc<HashMap<String, u32>>>>,
    enums: Mutex<Option<Arc<HashSet<u32>>>>,
}

impl RowReader {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, types: Mutex::default(), enums: Mutex::default() }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn catalog(
        &self,
        table: &str,
    ) -> sqlx::Result<(Arc<HashMap<String, u32>>, Arc<HashSet<u32>>)> {
        let cached = self.types.lock().unwrap_or_else(|e| e.into_inner()).get(table).cloned();
        let enums = self.enums.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let (Some(t), Some(e)) = (cached, enums) {
            return Ok((t, e));
        }
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT attname::text, atttypid::int8 FROM pg_attribute
              WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
        )
        .bind(format!("public.{}", quote_ident(table)))
        .fetch_all(&self.pool)
        .await?;
        let types: Arc<HashMap<String, u32>> =
            Arc::new(rows.into_iter().map(|(c, o)| (c, o as u32)).collect());
        let enums: Vec<i64> =
            sqlx::query_scalar("SELECT oid::int8 FROM pg_type WHERE typtype = 'e'")
                .fetch_all(&self.pool)
                .await?;
        let enums: Arc<HashSet<u32>> = Arc::new(enums.into_iter().map(|o| o as u32).collect());
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_owned(), types.clone());
        *self.enums.lock().unwrap_or_else(|e| e.into_inner()) = Some(enums.clone());
        Ok((types, enums))
    }

    /// `SELECT t.id, ARRAY[t.col::text, …] FROM table t WHERE {filter} ORDER BY t.id {tail}`,
    /// decoded.
    async fn read(
        &self,
        table: &str,
        columns: &[String],
        filter: &str,
        tail: &str,
        bind: impl FnOnce(
            sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
        ) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::Result<Vec<DocRow>> {
        let (types, enums) = self.catalog(table).await?;
        // Each type's output function (what pgoutput sends), which `::text` is not for all
        // types (a boolean casts to 'true', its output is 't'); concat calls it.
        let texts: Vec<String> = columns
            .iter()
            .map(|c| {
                let c = quote_ident(c);
                format!("CASE WHEN t.{c} IS NULL THEN NULL ELSE concat(t.{c}) END")
            })
            .collect();
        let sql = format!(
            "SELECT t.id, ARRAY[{}]::text[] FROM {} t WHERE {filter} ORDER BY t.id {tail}",
            if texts.is_empty() { "NULL".to_owned() } else { texts.join(", ") },
            quote_ident(table)
        );
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *tx).await?;
        let rows = bind(sqlx::query(&sql)).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let is_enum = |oid: u32| enums.contains(&oid);
        rows.into_iter()
            .map(|r| {
                let id: Uuid = r.try_get(0)?;
                let values: Vec<Option<String>> = r.try_get(1)?;
                let doc = columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| {
                        let oid = types.get(c).copied().unwrap_or(25);
                        let json = v.map_or(Value::Null, |t| {
                            PgValue::from_text(oid, &t, &is_enum).to_json()
                        });
                        (c.clone(), json)
                    })
                    .collect();
                Ok((id, doc))
            })
            .collect()
    }

    /// The next `limit` rows after `after` in key order, matching `predicate` (an operator's,
    /// checked when queued; run read-only).
    pub async fn chunk(
        &self,
        table: &str,
        columns: &[String],
        predicate: Option<&str>,
        after: Option<Uuid>,
        limit: i64,
    ) -> sqlx::Result<Vec<DocRow>> {
        let filter =
            format!("($1::uuid IS NULL OR t.id > $1) AND ({})", predicate.unwrap_or("true"));
        self.read(table, columns, &filter, "LIMIT $2", |q| q.bind(after).bind(limit)).await
    }

    /// These rows, as they are now (the missing are gone).
    pub async fn by_ids(
        &self,
        table: &str,
        columns: &[String],
        ids: &[Uuid],
    ) -> sqlx::Result<Vec<DocRow>> {
        self.read(table, columns, "t.id = ANY($1)", "", |q| q.bind(ids.to_vec())).await
    }

    /// Rows of a table (exact count).
    pub async fn count(&self, table: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}", quote_ident(table)))
            .fetch_one(&self.pool)
            .await
    }

    /// A version for rows read next, in the stream's order: below the commit LSN of every
    /// transaction the read cannot see, and at or above that of every one it sees. It is the
    /// WAL position now, less one; before the read, transactions in progress at this moment
    /// are given up to `settle` to end (one that wrote its commit record but is not visible
    /// yet would otherwise be hidden from the read while its change looked older than it).
    pub async fn version_for_read(&self, settle: Duration) -> sqlx::Result<u64> {
        let (lsn, running): (String, Vec<String>) = sqlx::query_as(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::text,
                    ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot())::text)",
        )
        .fetch_one(&self.pool)
        .await?;
        let version = lsn.parse::<u64>().unwrap_or(1).saturating_sub(1);
        let deadline = Instant::now() + settle;
        let mut running = running;
        while !running.is_empty() && Instant::now() < deadline {
            running = sqlx::query_scalar(
                "SELECT x FROM unnest($1::text[]) x WHERE pg_xact_status(x::xid8) = 'in progress'",
            )
            .bind(&running)
            .fetch_all(&self.pool)
            .await?;
            if !running.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(version)
    }
}
