//! The replication slot: the outbound checkpoint. DBAs create, inspect and drop it; the
//! daemon creates it when missing but never recreates a lost one (`cdc slot recover` does).

use super::SqlError;
use pgwire_replication::Lsn;
use serde::Serialize;
use tokio_postgres::Client;

/// What `pg_replication_slots` says about a slot, with lag computed against the current WAL.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub name: String,
    pub plugin: Option<String>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<String>,
    pub restart_lsn: Option<String>,
    /// reserved, extended, unreserved or lost.
    pub wal_status: Option<String>,
    pub safe_wal_size: Option<i64>,
    /// pg_current_wal_lsn() − confirmed_flush_lsn.
    pub lag_bytes: Option<i64>,
    /// pg_current_wal_lsn() − restart_lsn: WAL the slot keeps on disk.
    pub retained_bytes: Option<i64>,
}

impl SlotStatus {
    /// A problem that makes the slot unusable or at risk, with the fix.
    pub fn problem(&self) -> Option<String> {
        match self.wal_status.as_deref() {
            Some("lost") => Some(format!(
                "slot {} is lost: WAL it needed was removed, so changes were missed. Stop `cdc run` and run `cdc slot recover` (a new slot, then a full backfill)",
                self.name
            )),
            Some("unreserved") => Some(format!(
                "slot {} is about to lose WAL (wal_status unreserved, safe_wal_size {:?} bytes): the daemon is too far behind; fix the destination or raise max_slot_wal_keep_size",
                self.name, self.safe_wal_size
            )),
            _ if self.plugin.as_deref().is_some_and(|p| p != "pgoutput") => {
                Some(format!("slot {} uses plugin {:?}, not pgoutput; drop it and create it with `cdc slot create`", self.name, self.plugin))
            }
            _ => None,
        }
    }
}

pub async fn status(client: &Client, slot: &str) -> Result<Option<SlotStatus>, SqlError> {
    let row = client
        .query_opt(
            "SELECT slot_name::text, plugin::text, active, active_pid, confirmed_flush_lsn::text, restart_lsn::text,
                    wal_status, safe_wal_size,
                    (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint,
                    (pg_current_wal_lsn() - restart_lsn)::bigint
             FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'logical'",
            &[&slot],
        )
        .await?;
    Ok(row.map(|r| SlotStatus {
        name: r.get(0),
        plugin: r.get(1),
        active: r.get(2),
        active_pid: r.get(3),
        confirmed_flush_lsn: r.get(4),
        restart_lsn: r.get(5),
        wal_status: r.get(6),
        safe_wal_size: r.get(7),
        lag_bytes: r.get(8),
        retained_bytes: r.get(9),
    }))
}

/// From PostgreSQL 17 a logical slot created with `failover` is copied to standbys
/// (`sync_replication_slots`), so a promoted standby still has it. Before, a primary
/// failover loses the slot and `cdc slot recover` is the way back.
pub const FAILOVER_SLOTS_SINCE: i32 = 170_000;

/// The server's `server_version_num` (e.g. 150004).
pub async fn server_version(client: &Client) -> Result<i32, SqlError> {
    Ok(client.query_one("SELECT current_setting('server_version_num')::int", &[]).await?.get(0))
}

/// Creates a pgoutput slot (with `failover = true` where the server has failover slots);
/// returns its consistent point.
pub async fn create(client: &Client, slot: &str) -> Result<Lsn, SqlError> {
    // (name, plugin, temporary, twophase, failover): the failover argument is PostgreSQL 17's.
    let sql = if server_version(client).await? >= FAILOVER_SLOTS_SINCE {
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput', false, false, true)"
    } else {
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')"
    };
    let row = client.query_one(sql, &[&slot]).await?;
    let lsn: String = row.get(0);
    Ok(Lsn::parse(&lsn).unwrap_or(Lsn::ZERO))
}

pub async fn drop(client: &Client, slot: &str) -> Result<(), SqlError> {
    client.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await?;
    Ok(())
}

/// Ends the session streaming from the slot (walsender `pid`) and waits until the slot is
/// free (at most 10 s).
pub async fn end_consumer(client: &Client, slot: &str, pid: i32) -> Result<(), SqlError> {
    client.execute("SELECT pg_terminate_backend($1)", &[&pid]).await?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if status(client, slot).await?.is_none_or(|s| s.active_pid != Some(pid)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Moves the confirmed position forward (never back).
pub async fn advance(client: &Client, slot: &str, lsn: Lsn) -> Result<(), SqlError> {
    let target = lsn.to_string();
    client
        .execute(
            "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn) FROM pg_replication_slots
             WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn",
            &[&slot, &target],
        )
        .await?;
    Ok(())
}

/// Valid slot names: what PostgreSQL accepts (lowercase letters, digits, underscore, ≤ 63).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
