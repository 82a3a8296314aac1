//! Applying Airtable's changes to Postgres: one transaction per batch, under the inbound
//! replication origin (so the outbound stream skips it), on one dedicated connection.
//!
//! - Idempotent: records map to rows through airtable_id_map; an update that changes
//!   nothing writes nothing; delivery keys in sync_inbox_events make a redelivery a no-op.
//! - Only Airtable-owned columns are written.
//! - Deletions: a row nothing references is deleted; a referenced one is soft-deleted
//!   (`deleted_at`), so history keeps its meaning. Rows Postgres owns are never deleted
//!   from Airtable.
//! - A record that cannot be applied (wrong type, unknown link, a constraint) is parked in
//!   sync_dead_letter (direction inbound) with its raw payload, and the rest commits.

use super::values::{row_values, Columns, LinkShape, ValueError};
use crate::{
    config::INBOUND_ORIGIN,
    postgres::{
        dead_letter::{self, DeadLetter, Direction},
        quote_ident,
    },
};
use chrono::{DateTime, Utc};
use schema::mapping::{MappedTable, Mapping};
use serde_json::{json, Map, Value};
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Transaction};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};
use tokio::sync::Mutex;
use uuid::Uuid;

/// The channel a users upsert notifies (payload: the lower-cased email), for logins
/// waiting on a read-through.
use schema::channels::USER_SYNCED as USER_SYNCED_CHANNEL;

/// A record's state in Airtable.
#[derive(Debug, Clone)]
pub struct Upsert {
    /// Index into the mapping's tables.
    pub table: usize,
    pub record_id: String,
    /// Cells by Airtable field name (records API format), the merge field included when set.
    pub fields: Map<String, Value>,
    /// Every field is present (absent = empty); otherwise only changed fields are.
    pub complete: bool,
    /// When Airtable made the change, where known (for the lag histogram).
    pub changed_at: Option<DateTime<Utc>>,
}

/// Something that cannot be applied, kept with its raw payload.
#[derive(Debug, Clone)]
pub struct Parked {
    pub table: Option<String>,
    pub record_id: Option<String>,
    pub operation: &'static str,
    pub payload: Value,
    pub code: String,
    pub message: String,
}

/// One transaction's worth of changes.
#[derive(Debug, Default)]
pub struct Batch {
    pub upserts: Vec<Upsert>,
    /// (table index, record id).
    pub deletes: Vec<(usize, String)>,
    pub parked: Vec<Parked>,
    /// Delivery keys (source, key) recorded with the changes.
    pub events: Vec<(String, String)>,
    /// Checkpoints (name, value) committed with the changes.
    pub checkpoints: Vec<(String, Value)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty()
            && self.deletes.is_empty()
            && self.parked.is_empty()
            && self.events.is_empty()
            && self.checkpoints.is_empty()
    }
}

/// What a batch did.
#[derive(Debug, Default, Clone)]
pub struct Applied {
    pub written: usize,
    pub unchanged: usize,
    pub ignored: usize,
    pub deleted: usize,
    pub soft_deleted: usize,
    pub parked: usize,
    /// Rows created for records that carry no pg id yet: (table index, record id, pg id).
    /// The caller writes the pg id into Airtable, so outbound writes merge onto the record.
    pub to_stamp: Vec<(usize, String, Uuid)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the inbound replication origin is unavailable: {0}; grant the replication-origin functions to the daemon's role (see migrations/0005_privileges.sql)")]
    Origin(sqlx::Error),
}

/// What the applier knows about the Postgres catalog.
#[derive(Debug, Default)]
struct Catalog {
    integer: HashSet<(String, String)>,
    arrays: HashSet<(String, String)>,
    /// target table -> (referring table, column, is array), from the mapping's links.
    referrers: HashMap<String, Vec<(String, String, bool)>>,
    /// NOT NULL columns with a default -> the default expression: an empty Airtable cell
    /// means the default there (the migrations' own SQL, read from the catalog).
    defaults: HashMap<(String, String), String>,
}

pub struct Applier {
    mapping: Arc<Mapping>,
    pool: PgPool,
    conn: Mutex<Option<PgConnection>>,
    catalog: Catalog,
}

impl Applier {
    pub async fn new(mapping: Arc<Mapping>, pool: PgPool) -> sqlx::Result<Self> {
        let rows: Vec<(String, String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO', column_default::text
               FROM information_schema.columns WHERE table_schema = current_schema()",
        )
        .fetch_all(&pool)
        .await?;
        let mut catalog = Catalog::default();
        for (t, c, ty, not_null, default) in rows {
            if let (true, Some(d)) = (not_null, default) {
                catalog.defaults.insert((t.clone(), c.clone()), d);
            }
            match ty.as_str() {
                "integer" | "bigint" | "smallint" => {
                    catalog.integer.insert((t, c));
                }
                "ARRAY" => {
                    catalog.arrays.insert((t, c));
                }
                _ => {}
            }
        }
        for t in &mapping.tables {
            for c in &t.columns {
                if let Some(target) = &c.field.link {
                    let array =
                        catalog.arrays.contains(&(t.table.name.to_owned(), c.column.clone()));
                    catalog.referrers.entry(target.clone()).or_default().push((
                        t.table.name.to_owned(),
                        c.column.clone(),
                        array,
                    ));
                }
            }
        }
        Ok(Self { mapping, pool, conn: Mutex::new(None), catalog })
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The dedicated connection, its session under the inbound origin.
    async fn connection(slot: &mut Option<PgConnection>, pool: &PgPool) -> Result<(), ApplyError> {
        if slot.is_some() {
            return Ok(());
        }
        let mut conn = pool.acquire().await?.detach();
        // Origins are cluster-wide and each is active in one session at a time: one per
        // database, so daemons of two databases on one cluster do not collide. The stream
        // skips `coach_inbound` and `coach_inbound_*` alike.
        let database: String =
            sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await?;
        let origin = format!("{INBOUND_ORIGIN}_{database}");
        sqlx::query(
            "SELECT pg_replication_origin_create($1) WHERE pg_replication_origin_oid($1) IS NULL",
        )
        .bind(&origin)
        .execute(&mut conn)
        .await
        .map_err(ApplyError::Origin)?;
        sqlx::query("SELECT pg_replication_origin_session_setup($1)")
            .bind(&origin)
            .execute(&mut conn)
            .await
            .map_err(ApplyError::Origin)?;
        *slot = Some(conn);
        Ok(())
    }

    /// Pg ids of linked records (target table, record id) that Airtable links to but
    /// Postgres does not know yet, grouped by target table index.
    pub async fn missing_links(
        &self,
        upserts: &[Upsert],
    ) -> sqlx::Result<HashMap<usize, Vec<String>>> {
        let in_batch: HashSet<(usize, &str)> =
            upserts.iter().map(|u| (u.table, u.record_id.as_str())).collect();
        let wanted = self.links_of(upserts);
        let known = self.lookup_links(&self.pool, &wanted).await?;
        let mut missing: HashMap<usize, Vec<String>> = HashMap::new();
        for (target, rid) in wanted {
            if known.contains_key(&(target.clone(), rid.clone())) {
                continue;
            }
            let Some(ti) = self.mapping.tables.iter().position(|t| t.table.name == target) else {
                continue;
            };
            if !in_batch.contains(&(ti, rid.as_str())) {
                missing.entry(ti).or_default().push(rid);
            }
        }
        Ok(missing)
    }

    fn links_of(&self, upserts: &[Upsert]) -> HashSet<(String, String)> {
        let mut out = HashSet::new();
        for u in upserts {
            for c in self.mapping.tables[u.table].inbound() {
                let (Some(target), Some(Value::Array(ids))) =
                    (&c.field.link, u.fields.get(&c.field.field))
                else {
                    continue;
                };
                for id in ids.iter().filter_map(Value::as_str) {
                    out.insert((target.clone(), id.to_owned()));
                }
            }
        }
        out
    }

    async fn lookup_links<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        db: E,
        wanted: &HashSet<(String, String)>,
    ) -> sqlx::Result<HashMap<(String, String), Uuid>> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let (tables, recs): (Vec<String>, Vec<String>) = wanted.iter().cloned().unzip();
        let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
            "SELECT m.table_name, m.airtable_record_id, m.pg_id FROM airtable_id_map m
               JOIN unnest($1::text[], $2::text[]) AS w(t, r) ON m.table_name = w.t AND m.airtable_record_id = w.r",
        )
        .bind(&tables)
        .bind(&recs)
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(|(t, r, id)| ((t, r), id)).collect())
    }

    /// Applies `batch` in one transaction. Delivery keys already recorded make the whole
    /// batch a no-op (it was applied before).
    pub async fn apply(&self, batch: Batch) -> Result<Applied, ApplyError> {
        let mut slot = self.conn.lock().await;
        Self::connection(&mut slot, &self.pool).await?;
        let Some(conn) = slot.as_mut() else { return Ok(Applied::default()) };
        let result = self.apply_on(conn, batch).await;
        if let Err(ApplyError::Db(e)) = &result {
            if !matches!(e, sqlx::Error::Database(_)) {
                // The connection may be gone: the next batch opens a new one.
                *slot = None;
            }
        }
        result
    }

    async fn apply_on(
        &self,
        conn: &mut PgConnection,
        mut batch: Batch,
    ) -> Result<Applied, ApplyError> {
        let mut applied = Applied::default();
        let mut tx = conn.begin().await?;
        if !batch.events.is_empty() {
            let (sources, keys): (Vec<String>, Vec<String>) = batch.events.iter().cloned().unzip();
            let fresh: i64 = sqlx::query_scalar(
                "WITH ins AS (INSERT INTO sync_inbox_events (source, event_key) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins",
            )
            .bind(&sources)
            .bind(&keys)
            .fetch_one(&mut *tx)
            .await?;
            if fresh == 0 {
                metrics::counter!("inbound_duplicate_deliveries_total").increment(1);
                batch.upserts.clear();
                batch.deletes.clear();
                batch.parked.clear();
            }
        }
        // Parents first, so links inside the batch resolve.
        batch.upserts.sort_by_key(|u| u.table);
        let mut i = 0;
        while i < batch.upserts.len() {
            let table = batch.upserts[i].table;
            let end = batch.upserts[i..]
                .iter()
                .position(|u| u.table != table)
                .map_or(batch.upserts.len(), |p| i + p);
            self.upsert_group(&mut tx, &batch.upserts[i..end], &mut applied, &mut batch.parked)
                .await?;
            i = end;
        }
        for (table, record_id) in &batch.deletes {
            self.delete(&mut tx, *table, record_id, &mut applied).await?;
        }
        for p in &batch.parked {
            park(&mut *tx, p).await?;
            metrics::counter!("inbound_dead_letters_total", "code" => p.code.clone()).increment(1);
        }
        applied.parked = batch.parked.len();
        for (name, value) in &batch.checkpoints {
            sqlx::query("INSERT INTO sync_checkpoint (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let now = Utc::now();
        for u in &batch.upserts {
            if let Some(at) = u.changed_at {
                let t = self.mapping.tables[u.table].table.name;
                metrics::histogram!("inbound_lag_seconds", "table" => t)
                    .record((now - at).num_milliseconds().max(0) as f64 / 1000.0);
            }
        }
        Ok(applied)
    }

    /// Of `(table, record)` pairs about to be applied from a partial change, those that must
    /// be read whole first: records Postgres has no row for, and records with a pending
    /// inbound dead letter (their parked state is not in Postgres either).
    pub async fn needing_whole_records(
        &self,
        records: &[(usize, String)],
    ) -> sqlx::Result<Vec<(usize, String)>> {
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

    async fn upsert_group(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        group: &[Upsert],
        applied: &mut Applied,
        parked: &mut Vec<Parked>,
    ) -> Result<(), ApplyError> {
        let t = &self.mapping.tables[group[0].table];
        let links = self.lookup_links(&mut **tx, &self.links_of(group)).await?;
        let ids: Vec<String> = group.iter().map(|u| u.record_id.clone()).collect();
        let known: HashMap<String, Uuid> = sqlx::query_as::<_, (String, Uuid)>(
            "SELECT airtable_record_id, pg_id FROM airtable_id_map WHERE table_name = $1 AND airtable_record_id = ANY($2)",
        )
        .bind(t.table.name)
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        let integer =
            |tb: &str, c: &str| self.catalog.integer.contains(&(tb.to_owned(), c.to_owned()));
        let shape = |tb: &str, c: &str| {
            if self.catalog.arrays.contains(&(tb.to_owned(), c.to_owned())) {
                LinkShape::Many
            } else {
                LinkShape::One
            }
        };
        let cols = Columns { integer: &integer, link_shape: &shape, links: &links };
        let mut applied_ids: Vec<&str> = Vec::new();
        for u in group {
            let mut values = match row_values(t, &u.fields, u.complete, &cols) {
                Ok(v) => v,
                Err(e) => {
                    parked.push(parked_record(t, u, e));
                    continue;
                }
            };
            if t.table.rows_owned_by_airtable() {
                // The record is there, so the row is not deleted (an undo in Airtable
                // restores a record under its old id).
                values.insert("deleted_at".into(), Value::Null);
            }
            let merge = u
                .fields
                .get(&self.mapping.merge_field)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Uuid>().ok());
            let mut sp = tx.begin().await?;
            let outcome = self
                .upsert_one(&mut sp, t, u, known.get(&u.record_id).copied(), merge, &values)
                .await;
            match outcome {
                Ok(o) => {
                    sp.commit().await?;
                    // A record's whole current state supersedes whatever was parked for it.
                    if u.complete {
                        applied_ids.push(&u.record_id);
                    }
                    match o {
                        Written::Changed(id, stamp) => {
                            applied.written += 1;
                            metrics::counter!("inbound_changes_applied_total", "table" => t.table.name, "op" => "upsert").increment(1);
                            if stamp {
                                applied.to_stamp.push((u.table, u.record_id.clone(), id));
                            }
                            if t.table.name == "users" {
                                sqlx::query(
                                    "SELECT pg_notify($1, lower(email)) FROM users WHERE id = $2",
                                )
                                .bind(USER_SYNCED_CHANNEL)
                                .bind(id)
                                .execute(&mut **tx)
                                .await?;
                            }
                        }
                        Written::Unchanged => applied.unchanged += 1,
                        Written::Ignored => {
                            applied.ignored += 1;
                            metrics::counter!("inbound_changes_ignored_total", "table" => t.table.name).increment(1);
                        }
                    }
                }
                Err(sqlx::Error::Database(db)) => {
                    sp.rollback().await?;
                    let code = match db.code().as_deref() {
                        Some("23502") => "NOT_NULL_VIOLATION",
                        Some("23505") => "UNIQUE_VIOLATION",
                        Some("23503") => "FOREIGN_KEY_VIOLATION",
                        Some("23514") | Some("23P01") => "CHECK_VIOLATION",
                        _ => "INVALID_VALUE",
                    };
                    // The constraint or column, never the SQL.
                    let detail = db
                        .constraint()
                        .map(str::to_owned)
                        .unwrap_or_else(|| db.message().to_owned());
                    parked.push(parked_record(
                        t,
                        u,
                        ValueError { code, message: format!("Postgres refused the row: {detail}") },
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Dead letters of records whose whole state applies now are resolved (fixed in
        // Airtable, then polled, reconciled or replayed).
        if !applied_ids.is_empty() {
            sqlx::query(
                "UPDATE sync_dead_letter SET status = 'replayed', resolved_at = now()
                  WHERE direction = 'inbound' AND status = 'pending' AND table_name = $1 AND airtable_record_id = ANY($2)",
            )
            .bind(t.table.name)
            .bind(&applied_ids)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    async fn upsert_one(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        t: &MappedTable,
        u: &Upsert,
        known: Option<Uuid>,
        merge: Option<Uuid>,
        values: &Map<String, Value>,
    ) -> sqlx::Result<Written> {
        let name = quote_ident(t.table.name);
        let id = match known {
            Some(id) => Some(id),
            None => match merge {
                Some(m) => {
                    let exists: bool = sqlx::query_scalar(&format!(
                        "SELECT EXISTS (SELECT 1 FROM {name} WHERE id = $1)"
                    ))
                    .bind(m)
                    .fetch_one(&mut **tx)
                    .await?;
                    exists.then_some(m)
                }
                None => None,
            },
        };
        if let Some(id) = id {
            if known.is_none() {
                map_record(&mut **tx, t.table.name, id, &u.record_id).await?;
            }
            if values.is_empty() {
                return Ok(Written::Unchanged);
            }
            let cols: Vec<String> = values.keys().map(|c| quote_ident(c)).collect();
            let new: Vec<String> = values
                .keys()
                .zip(&cols)
                .map(|(c, q)| {
                    match self.catalog.defaults.get(&(t.table.name.to_owned(), c.clone())) {
                        Some(d) => format!("COALESCE(r.{q}, {d})"),
                        None => format!("r.{q}"),
                    }
                })
                .collect();
            let set: Vec<String> =
                cols.iter().zip(&new).map(|(c, n)| format!("{c} = {n}")).collect();
            let old: Vec<String> = cols.iter().map(|c| format!("t.{c}")).collect();
            let sql = format!(
                "UPDATE {name} t SET {} FROM jsonb_populate_record(NULL::{name}, $2) r WHERE t.id = $1 AND ROW({}) IS DISTINCT FROM ROW({})",
                set.join(", "),
                old.join(", "),
                new.join(", ")
            );
            let n = sqlx::query(&sql)
                .bind(id)
                .bind(Value::Object(values.clone()))
                .execute(&mut **tx)
                .await?;
            return Ok(if n.rows_affected() > 0 {
                Written::Changed(id, false)
            } else {
                Written::Unchanged
            });
        }
        if !t.table.rows_owned_by_airtable() {
            // Postgres decides which of these rows exist; Airtable only edits its fields.
            return Ok(Written::Ignored);
        }
        let id = merge.unwrap_or_else(Uuid::new_v4);
        let present: Map<String, Value> = values
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cols: Vec<String> = present.keys().map(|c| quote_ident(c)).collect();
        let sql = format!(
            "INSERT INTO {name} (id{}) SELECT $1{} FROM jsonb_populate_record(NULL::{name}, $2) r",
            cols.iter().map(|c| format!(", {c}")).collect::<String>(),
            cols.iter().map(|c| format!(", r.{c}")).collect::<String>(),
        );
        sqlx::query(&sql).bind(id).bind(Value::Object(present)).execute(&mut **tx).await?;
        map_record(&mut **tx, t.table.name, id, &u.record_id).await?;
        Ok(Written::Changed(id, merge.is_none()))
    }

    async fn delete(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        table: usize,
        record_id: &str,
        applied: &mut Applied,
    ) -> Result<(), ApplyError> {
        let t = &self.mapping.tables[table];
        if !t.table.rows_owned_by_airtable() {
            applied.ignored += 1;
            metrics::counter!("inbound_changes_ignored_total", "table" => t.table.name)
                .increment(1);
            return Ok(());
        }
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT pg_id FROM airtable_id_map WHERE table_name = $1 AND airtable_record_id = $2",
        )
        .bind(t.table.name)
        .bind(record_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = id else {
            // Never known here, or already deleted: nothing to do.
            applied.unchanged += 1;
            return Ok(());
        };
        let name = quote_ident(t.table.name);
        let mut checks = Vec::new();
        for (rt, rc, array) in self.catalog.referrers.get(t.table.name).into_iter().flatten() {
            let (rt, rc) = (quote_ident(rt), quote_ident(rc));
            checks.push(if *array {
                format!("EXISTS (SELECT 1 FROM {rt} WHERE $1 = ANY ({rc}))")
            } else {
                format!("EXISTS (SELECT 1 FROM {rt} WHERE {rc} = $1)")
            });
        }
        let referenced = if checks.is_empty() {
            false
        } else {
            sqlx::query_scalar::<_, bool>(&format!("SELECT {}", checks.join(" OR ")))
                .bind(id)
                .fetch_one(&mut **tx)
                .await?
        };
        let mut hard = !referenced;
        if hard {
            let mut sp = tx.begin().await?;
            match sqlx::query(&format!("DELETE FROM {name} WHERE id = $1"))
                .bind(id)
                .execute(&mut *sp)
                .await
            {
                Ok(_) => {
                    sqlx::query("DELETE FROM airtable_id_map WHERE table_name = $1 AND pg_id = $2")
                        .bind(t.table.name)
                        .bind(id)
                        .execute(&mut *sp)
                        .await?;
                    sp.commit().await?;
                }
                // Referenced through a key the mapping does not link: keep the row.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23503") => {
                    sp.rollback().await?;
                    hard = false;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if hard {
            applied.deleted += 1;
            metrics::counter!("inbound_changes_applied_total", "table" => t.table.name, "op" => "delete").increment(1);
        } else {
            sqlx::query(&format!(
                "UPDATE {name} SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL"
            ))
            .bind(id)
            .execute(&mut **tx)
            .await?;
            applied.soft_deleted += 1;
            metrics::counter!("inbound_changes_applied_total", "table" => t.table.name, "op" => "soft_delete").increment(1);
        }
        Ok(())
    }

    /// Rows of an Airtable-owned table that Airtable no longer has (the full reconcile's
    /// deletion pass): every mapped record id not in `present`.
    pub async fn vanished(
        &self,
        table: usize,
        present: &HashSet<String>,
    ) -> sqlx::Result<Vec<String>> {
        let t = &self.mapping.tables[table];
        let mapped: Vec<String> = sqlx::query_scalar(
            "SELECT m.airtable_record_id FROM airtable_id_map m WHERE m.table_name = $1",
        )
        .bind(t.table.name)
        .fetch_all(&self.pool)
        .await?;
        Ok(mapped.into_iter().filter(|r| !present.contains(r)).collect())
    }

    /// A checkpoint's value.
    pub async fn checkpoint(&self, name: &str) -> sqlx::Result<Option<Value>> {
        sqlx::query_scalar("SELECT value FROM sync_checkpoint WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
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

enum Written {
    /// (pg id, whether Airtable still needs the pg id written into the record)
    Changed(Uuid, bool),
    Unchanged,
    Ignored,
}

fn parked_record(t: &MappedTable, u: &Upsert, e: ValueError) -> Parked {
    Parked {
        table: Some(t.table.name.to_owned()),
        record_id: Some(u.record_id.clone()),
        operation: "upsert",
        payload: json!({ "id": u.record_id, "fields": u.fields, "complete": u.complete }),
        code: e.code.to_owned(),
        message: e.message,
    }
}

async fn map_record<'e, E: sqlx::PgExecutor<'e>>(
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

async fn park<'e, E: sqlx::PgExecutor<'e>>(db: E, p: &Parked) -> sqlx::Result<()> {
    tracing::warn!(table = ?p.table, record = ?p.record_id, code = %p.code, message = %p.message, "inbound change parked in the dead-letter queue");
    let d = DeadLetter {
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
