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
use schema::mapping::{MappedTable, Mapping, TableId};
use serde_json::{json, Map, Value};
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Transaction};
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};
use tokio::sync::Mutex;

mod catalog;
mod delete;
mod held;
mod links;
mod origin;
mod store;
mod upsert;

use catalog::Catalog;
pub use held::{DeleteGuard, HeldDelete};
use store::{map_record, park};
use uuid::Uuid;

/// The channel a users upsert notifies (payload: the lower-cased email), for logins
/// waiting on a read-through.
use schema::channels::USER_SYNCED as USER_SYNCED_CHANNEL;

/// A record's state in Airtable.
#[derive(Debug, Clone)]
pub struct Upsert {
    /// Index into the mapping's tables.
    pub table: TableId,
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
    pub deletes: Vec<(TableId, String)>,
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
    /// Rows created for records that carry no pg id yet: (table index, record id, pg id),
    /// queued in `sync_pending_stamps` with them (the stamper writes them into Airtable).
    pub to_stamp: Vec<(TableId, String, Uuid)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the inbound replication origin is unavailable: {0}; grant the replication-origin functions to the daemon's role (see migrations/0005_privileges.sql)")]
    Origin(sqlx::Error),
    #[error("replication origin {0} is in use by another session: another `cdc import` or `cdc verify --repair` is running on this database; wait for it to end")]
    OriginBusy(String),
}

/// Which columns an applier writes, and which rows it may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The sync: Airtable-owned columns; new rows only where Airtable owns the rows.
    Inbound,
    /// The cutover import: every mapped column, any row (Airtable holds the history).
    Import,
}

/// Whose writes these are. Each writer has its own replication origin (an origin is active
/// in one session at a time), and the stream skips both: an operator's import or repair
/// runs beside `cdc run` and neither echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// `cdc run`: `coach_inbound_<database>`.
    Daemon,
    /// `cdc import`, `cdc verify --repair`: `coach_inbound_<database>_cli`.
    Operator,
}

pub struct Applier {
    mapping: Arc<Mapping>,
    pool: PgPool,
    conn: Mutex<Option<PgConnection>>,
    catalog: Catalog,
    scope: Scope,
    writer: Writer,
}

impl Applier {
    /// The daemon's inbound sync.
    pub async fn new(mapping: Arc<Mapping>, pool: PgPool) -> sqlx::Result<Self> {
        Self::with_scope(mapping, pool, Scope::Inbound, Writer::Daemon).await
    }

    pub async fn with_scope(
        mapping: Arc<Mapping>,
        pool: PgPool,
        scope: Scope,
        writer: Writer,
    ) -> sqlx::Result<Self> {
        let catalog = Catalog::read(&pool, &mapping).await?;
        Ok(Self { mapping, pool, conn: Mutex::new(None), catalog, scope, writer })
    }

    /// The columns of `t` this applier writes.
    pub(super) fn columns<'t>(
        &self,
        t: &'t MappedTable,
    ) -> Box<dyn Iterator<Item = &'t schema::mapping::MappedColumn> + 't> {
        match self.scope {
            Scope::Inbound => Box::new(t.inbound()),
            Scope::Import => Box::new(t.columns.iter()),
        }
    }

    /// Whether this applier may create a row of `t` for a record Postgres does not have.
    fn creates_rows_of(&self, t: &MappedTable) -> bool {
        self.scope == Scope::Import || t.table.rows_owned_by_airtable()
    }

    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.mapping
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies `batch` in one transaction. Delivery keys already recorded make the whole
    /// batch a no-op (it was applied before).
    pub async fn apply(&self, batch: Batch) -> Result<Applied, ApplyError> {
        let mut slot = self.conn.lock().await;
        Self::connection(&mut slot, &self.pool, self.writer).await?;
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

    /// Ends the session (and so frees the origin) now, not when the socket is noticed gone:
    /// the next applier of the same writer may take the origin at once.
    pub async fn release(&self) {
        if let Some(mut conn) = self.conn.lock().await.take() {
            let _ = sqlx::query("SELECT pg_replication_origin_session_reset()")
                .execute(&mut conn)
                .await;
            let _ = sqlx::Connection::close(conn).await;
        }
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
            crate::postgres::checkpoint::write(&mut *tx, name, value).await?;
        }
        if self.scope == Scope::Inbound {
            // With the rows they belong to: a crash cannot lose a stamp. (An import's
            // records get their pg ids from the outbound writes that follow it.)
            store::queue_stamps(&mut *tx, &self.mapping, &applied.to_stamp).await?;
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
}
