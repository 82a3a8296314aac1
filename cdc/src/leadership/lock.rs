//! The leader lock: a session advisory lock on an ordinary connection of its own, and the
//! slot's row in `sync_leader` (epoch, holder, clean release).
//!
//! Advisory locks are local to a database, so the key only needs the slot: (a constant
//! namespace, FNV-1a of the slot's name). The lock lives as long as its session; the epoch
//! is bumped under it, so a higher epoch always belongs to a later holder.

use crate::postgres::{self, ConnInfo, SqlError};
use serde::Serialize;
use tokio_postgres::Client;

/// The first key of every leader lock ("cdc1"): keeps them apart from other advisory locks.
pub const NAMESPACE: i32 = 0x6364_6331;

/// `pg_locks k` holds a granted leader lock keyed by `$2` (the namespace) and `$3` (the slot's
/// key) in this database.
const LOCK_HELD: &str = "k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
     AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND k.classid = $2::int::oid AND k.objid = $3::int::oid";

/// The second key: FNV-1a (32 bits) of the slot's name.
pub fn slot_key(slot: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in slot.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

/// Who this process is, as `cdc slot status` and the standbys' readiness show it.
#[derive(Debug, Clone)]
pub struct Holder {
    pub host: String,
    pub pid: i32,
    pub ops_addr: String,
}

impl Holder {
    pub fn this_process(ops_addr: std::net::SocketAddr) -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Self { host, pid: std::process::id() as i32, ops_addr: ops_addr.to_string() }
    }
}

/// A slot's leader as `sync_leader` and `pg_locks` say.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderInfo {
    pub epoch: i64,
    pub host: String,
    pub pid: i32,
    pub ops_addr: Option<String>,
    pub since: chrono::DateTime<chrono::Utc>,
    /// Set when that leader stepped down cleanly.
    pub released_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether a session holds the lock now (false: no leader at this moment).
    pub holding: bool,
}

impl LeaderInfo {
    pub fn describe(&self) -> String {
        format!("{} (pid {}, epoch {})", self.host, self.pid, self.epoch)
    }
}

/// What taking the lead found about the previous leader.
#[derive(Debug, Clone, Copy)]
pub struct Takeover {
    pub epoch: i64,
    /// What is left of a 429 penalty the previous leader got: nothing is sent before.
    pub penalty_left: std::time::Duration,
    /// How the previous leader ended: None when there was none, Some(true) when it stepped
    /// down cleanly (no lease to wait out).
    pub previous_clean: Option<bool>,
}

/// The lock's session.
pub struct LockSession {
    client: Client,
    slot: String,
    key: i32,
}

impl LockSession {
    pub async fn connect(conn: &ConnInfo, app: &str, slot: &str) -> Result<Self, SqlError> {
        let client = postgres::connect(conn, &format!("{app}-leader")).await?;
        Ok(Self { client, slot: slot.to_owned(), key: slot_key(slot) })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Takes the lock if no session holds it.
    pub async fn try_lock(&self) -> Result<bool, SqlError> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&NAMESPACE, &self.key])
            .await?;
        Ok(row.get(0))
    }

    /// Under the lock: the next epoch, this process as holder, and whether the previous
    /// holder released cleanly.
    pub async fn take_epoch(&self, me: &Holder) -> Result<Takeover, SqlError> {
        let row = self
            .client
            .query_one(
                "WITH prev AS (SELECT released_at, penalty_until FROM sync_leader WHERE slot_name = $1)
                 INSERT INTO sync_leader AS l (slot_name, epoch, host, pid, ops_addr, backend_pid)
                 VALUES ($1, 1, $2, $3, $4, pg_backend_pid())
                 ON CONFLICT (slot_name) DO UPDATE SET epoch = l.epoch + 1, host = $2, pid = $3,
                     ops_addr = $4, backend_pid = pg_backend_pid(), since = now(),
                     heartbeat_at = now(), released_at = NULL
                 RETURNING epoch, (SELECT released_at IS NOT NULL FROM prev),
                     (SELECT greatest(extract(epoch FROM penalty_until - now()), 0)::float8 FROM prev)",
                &[&self.slot, &me.host, &me.pid, &me.ops_addr],
            )
            .await?;
        let penalty: Option<f64> = row.get(2);
        Ok(Takeover {
            epoch: row.get(0),
            previous_clean: row.get(1),
            penalty_left: std::time::Duration::from_secs_f64(penalty.unwrap_or(0.0)),
        })
    }

    /// The liveness check: the session answers, the heartbeat is renewed, and the slot's
    /// epoch comes back (None: the row is gone).
    /// `penalty_left`: what is left of a 429 penalty this leader got, handed on.
    pub async fn heartbeat(
        &self,
        penalty_left: std::time::Duration,
    ) -> Result<Option<i64>, SqlError> {
        self.update_row("heartbeat_at = now()", None, penalty_left).await
    }

    /// Updates the slot's row (of `epoch`, when given) with `set`, handing on what is left
    /// of a 429 penalty; returns the row's epoch (None: no such row).
    async fn update_row(
        &self,
        set: &'static str,
        epoch: Option<i64>,
        penalty_left: std::time::Duration,
    ) -> Result<Option<i64>, SqlError> {
        let sql = format!(
            "UPDATE sync_leader SET {set},
                 penalty_until = CASE WHEN $2::float8 > 0 THEN now() + make_interval(secs => $2::float8) ELSE penalty_until END
             WHERE slot_name = $1 AND ($3::bigint IS NULL OR epoch = $3) RETURNING epoch"
        );
        let row =
            self.client.query_opt(&sql, &[&self.slot, &penalty_left.as_secs_f64(), &epoch]).await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Ends the session holding the lock when its leader has not renewed the heartbeat for
    /// `stale` (the server has not noticed the client is gone: a partition). Returns the
    /// session's backend pid when it did.
    pub async fn end_stale_holder(
        &self,
        stale: std::time::Duration,
    ) -> Result<Option<i32>, SqlError> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT k.pid, pg_terminate_backend(k.pid)
                     FROM pg_locks k JOIN sync_leader l ON l.slot_name = $1
                     WHERE {LOCK_HELD} AND l.heartbeat_at < now() - make_interval(secs => $4)"
                ),
                &[&self.slot, &NAMESPACE, &self.key, &stale.as_secs_f64()],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Steps down: marks the release clean (the next leader need not wait out a lease) and
    /// lets the lock go.
    pub async fn release(
        &self,
        epoch: i64,
        penalty_left: std::time::Duration,
    ) -> Result<(), SqlError> {
        self.update_row("released_at = now()", Some(epoch), penalty_left).await?;
        self.client.execute("SELECT pg_advisory_unlock($1, $2)", &[&NAMESPACE, &self.key]).await?;
        Ok(())
    }

    /// The slot's leader, as the standbys report it.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>, SqlError> {
        leader(&self.client, &self.slot).await
    }
}

/// The slot's leader row, and whether its lock is held now.
pub async fn leader(client: &Client, slot: &str) -> Result<Option<LeaderInfo>, SqlError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT epoch, host, pid, ops_addr, since, released_at,
                        EXISTS (SELECT 1 FROM pg_locks k WHERE {LOCK_HELD})
                 FROM sync_leader WHERE slot_name = $1"
            ),
            &[&slot, &NAMESPACE, &slot_key(slot)],
        )
        .await?;
    Ok(row.map(|r| LeaderInfo {
        epoch: r.get(0),
        host: r.get(1),
        pid: r.get(2),
        ops_addr: r.get(3),
        since: r.get(4),
        released_at: r.get(5),
        holding: r.get(6),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_fnv1a_of_the_slot() {
        // FNV-1a 32 of "" and "a", from the reference values.
        assert_eq!(slot_key("") as u32, 0x811c_9dc5);
        assert_eq!(slot_key("a") as u32, 0xe40c_292c);
        assert_ne!(slot_key("coach_cdc"), slot_key("coach_cdc2"));
    }
}
