//! Several `cdc run` processes on one slot (high availability): who leads, kill -9 and
//! SIGTERM of the leader, and how long until a successor has confirmed the slot past the
//! moment it was stopped. The HA tests and `benches/ha` share it.

use crate::{airtable::cdc_run, cargo_bin, cdc::wait_until};
use airtable_emulator::Emulator;
use std::{
    process::Stdio,
    time::{Duration, Instant},
};
use tokio::process::{Child, Command};

/// One daemon process; its log (stderr) goes to a file, so a full pipe never stalls it.
pub struct Proc {
    pub port: u16,
    pub child: Child,
    pub pid: u32,
    pub log: std::path::PathBuf,
}

impl Proc {
    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The daemons of one slot.
pub struct Daemons {
    url: String,
    slot: String,
    env: Vec<(String, String)>,
    pub procs: Vec<Proc>,
}

/// A stopped leader, and what its successor must get past.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub at: Instant,
    pub epoch: i64,
    /// The WAL insert position when it stopped: the successor has caught up once the slot
    /// is confirmed past it (everything committed before the stop is in Airtable).
    pub lsn: String,
    /// The slot's confirmed position and walsender when it stopped.
    pub confirmed: String,
    pub walsender: Option<i32>,
    pub pid: u32,
    /// Its log.
    pub log: std::path::PathBuf,
}

/// How long after the stop the successor reached each step.
#[derive(Debug, Clone, Copy)]
pub struct Takeover {
    /// It holds the lock (a higher epoch).
    pub leading: Duration,
    /// Its walsender streams from the slot.
    pub streaming: Duration,
    /// It confirmed a position past the one the slot had at the stop.
    pub confirmed: Duration,
    /// The slot is confirmed past everything committed before the stop.
    pub caught_up: Duration,
}

impl Daemons {
    /// No process yet, against database `url`; `env` is added to each (after the test
    /// pacing of `cdc_run`, so it may override it).
    pub fn new(url: &str, slot: &str, env: &[(&str, &str)]) -> Self {
        Self {
            url: url.to_owned(),
            slot: slot.to_owned(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            procs: Vec::new(),
        }
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// Starts one more daemon.
    pub fn spawn(&mut self, e: &Emulator) -> &Proc {
        let port = crate::cdc::free_port();
        let mut c = cdc_run(
            &cargo_bin("cdc"),
            &self.url,
            &self.slot,
            &format!("{}_pub", self.slot),
            port,
            e,
        );
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let log = std::env::temp_dir().join(format!("cdc-ha-{}-{port}.log", self.slot));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::from(c)
            .env("LOG_FORMAT", "text")
            .env(
                "RUST_LOG",
                std::env::var("HA_RUST_LOG").unwrap_or_else(|_| {
                    "info,cdc::destination::airtable::writes=warn,schema=warn".into()
                }),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn cdc");
        let pid = child.id().expect("pid");
        self.procs.push(Proc { port, child, pid, log });
        self.procs.last().expect("just pushed")
    }

    /// The leading process (its index) and epoch, as `sync_leader` and the lock say.
    pub async fn leader(&self, pool: &sqlx::PgPool) -> Option<(usize, i64)> {
        let info: Option<(i32, i64, bool)> = sqlx::query_as(
            "SELECT pid, epoch, EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
                    AND classid = $2::int::oid AND objid = $3::int::oid
                    AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
             FROM sync_leader WHERE slot_name = $1",
        )
        .bind(&self.slot)
        .bind(cdc::leadership::lock::NAMESPACE)
        .bind(cdc::leadership::lock::slot_key(&self.slot))
        .fetch_optional(pool)
        .await
        .ok()
        .flatten();
        let (pid, epoch, holding) = info?;
        let i = self.procs.iter().position(|p| p.pid == pid as u32)?;
        holding.then_some((i, epoch))
    }

    /// Waits for a leader with an epoch above `above`.
    pub async fn wait_leader(&self, pool: &sqlx::PgPool, above: i64) -> (usize, i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(found) = self.leader(pool).await.filter(|(_, e)| *e > above) {
                return found;
            }
            assert!(Instant::now() < deadline, "no leader above epoch {above} within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the leader with SIGKILL (`term`: SIGTERM, and waits for it to exit); returns
    /// what its successor must get past and, for SIGTERM, the exit status.
    pub async fn stop_leader(
        &mut self,
        pool: &sqlx::PgPool,
        term: bool,
    ) -> (Stopped, Option<std::process::ExitStatus>) {
        let (i, epoch) = self.wait_leader(pool, 0).await;
        let (lsn, confirmed, walsender): (String, String, Option<i32>) = sqlx::query_as(
            "SELECT pg_current_wal_insert_lsn()::text, confirmed_flush_lsn::text, active_pid
             FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&self.slot)
        .fetch_one(pool)
        .await
        .expect("lsn");
        let mut p = self.procs.remove(i);
        let at = Instant::now();
        let status = if term {
            Some(sigterm(&mut p, Duration::from_secs(60)).await)
        } else {
            p.child.start_kill().expect("kill -9");
            let _ = p.child.wait().await;
            None
        };
        (Stopped { at, epoch, lsn, confirmed, walsender, pid: p.pid, log: p.log }, status)
    }

    /// Waits for each step of the successor's takeover in turn (see [`Takeover`]).
    pub async fn takeover(&self, pool: &sqlx::PgPool, stopped: &Stopped) -> Takeover {
        let (_, epoch) = self.wait_leader(pool, stopped.epoch).await;
        let leading = stopped.at.elapsed();
        let old = stopped.walsender.unwrap_or(0).to_string();
        let says = crate::cdc::slot_says;
        wait_until(Duration::from_secs(60), "the successor streams", || {
            says(pool, "SELECT active AND active_pid <> $2::int FROM pg_replication_slots WHERE slot_name = $1", &self.slot, &old)
        })
        .await;
        let streaming = stopped.at.elapsed();
        wait_until(Duration::from_secs(60), "the successor confirms", || {
            says(pool, "SELECT confirmed_flush_lsn > $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1", &self.slot, &stopped.confirmed)
        })
        .await;
        let confirmed = stopped.at.elapsed();
        wait_until(Duration::from_secs(120), "the successor catches up past the stop", || async {
            crate::cdc::confirmed_past(pool, &self.slot, &stopped.lsn).await
                && self.leader(pool).await.is_some_and(|(_, e)| e == epoch)
        })
        .await;
        Takeover { leading, streaming, confirmed, caught_up: stopped.at.elapsed() }
    }

    /// SIGTERM to process `i`; its exit status (within 30 s).
    pub async fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut p = self.procs.remove(i);
        sigterm(&mut p, Duration::from_secs(30)).await
    }

    /// The `/readyz` answer of process `i`.
    pub async fn readyz(&self, http: &reqwest::Client, i: usize) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}/readyz", self.procs[i].port);
        match http.get(url).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }
}

/// SIGTERM to `p`; its exit status, within `limit`.
async fn sigterm(p: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let _ = Command::new("kill").arg("-TERM").arg(p.pid.to_string()).status().await;
    tokio::time::timeout(limit, p.child.wait())
        .await
        .unwrap_or_else(|_| panic!("pid {} did not stop within {limit:?} of SIGTERM", p.pid))
        .expect("wait")
}

/// p50, p95 and max of `samples` (nearest rank).
pub fn percentiles(samples: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort();
    let rank = |q: f64| s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    (rank(0.50), rank(0.95), *s.last().unwrap_or(&Duration::ZERO))
}

const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const GOAL: &str = "20000000-0000-4000-8000-0000000000a1";

/// A write load on the demo data, a round every `every` until `stop`: inserts habit usage,
/// deletes every fifth row again and renames one goal, so lost, duplicated and reordered
/// writes all show in the final comparison. Returns the rounds written.
pub fn load(
    pool: &sqlx::PgPool,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let exec = |sql: String| {
            let pool = pool.clone();
            async move {
                if let Err(e) = sqlx::raw_sql(&sql).execute(&pool).await {
                    panic!("{sql}: {e}");
                }
            }
        };
        exec(format!(
            "INSERT INTO personal_goals (id, user_id, name) VALUES ('{GOAL}', '{USER}', 'v0')"
        ))
        .await;
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            exec(format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', DATE '2050-01-01' + {n});
                          UPDATE personal_goals SET name = 'v{n}' WHERE id = '{GOAL}'")).await;
            if n % 5 == 0 {
                exec(format!("DELETE FROM habit_usage WHERE user_id = '{USER}' AND date = DATE '2050-01-01' + {}", n - 2)).await;
            }
            tokio::time::sleep(every).await;
        }
        n
    })
}
