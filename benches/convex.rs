//! The Convex mirror, measured with the release binary on the same stream as the null
//! destination: `cdc run --destination convex` into the emulator (loopback, no latency)
//! against `cdc run --destination null`, each on a fresh database, its own slot.
//! 1. A stream backlog: 100k rows inserted (500 per transaction) while the daemon is stopped
//!    on its slot, then a daemon started: changes per second from its start until the slot is
//!    confirmed past them (the writer is out of the measure), mutation calls per change, peak
//!    RSS.
//! 2. A backlog from before the slot (200k rows): the initial copy's rows per second and
//!    peak RSS.
//!
//! `cargo bench -p benches --bench convex`

use benches::{peak_rss_kb, print_table};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use testkit::{
    cdc::{confirmed_past, current_wal_lsn, free_port},
    convex::{emulator, mirror},
    Cluster, ClusterOptions,
};

const DEMO: &str = include_str!("../tests/stack/demo.sql");
const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const LIVE: usize = 100_000;
const BACKLOG: usize = 200_000;

struct Env {
    cluster: Cluster,
    n: usize,
}

impl Env {
    async fn fresh(&mut self) -> (String, sqlx::PgPool, String) {
        self.n += 1;
        let db = format!("convex{}", self.n);
        let admin = sqlx::PgPool::connect(&self.cluster.url("postgres")).await.expect("admin");
        sqlx::query(&format!("CREATE DATABASE {db}")).execute(&admin).await.expect("db");
        admin.close().await;
        let url = self.cluster.url(&db);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .expect("pool");
        schema::postgres::migrate::run(&pool).await.expect("migrate");
        sqlx::raw_sql(DEMO).execute(&pool).await.expect("demo");
        (url, pool, format!("bench_convex_{}", self.n))
    }
}

async fn insert(pool: &sqlx::PgPool, n: usize, per_tx: usize, day0: usize) {
    for start in (0..n).step_by(per_tx) {
        let end = (start + per_tx).min(n);
        sqlx::query(&format!(
            "INSERT INTO habit_usage (user_id, method_id, date) SELECT '{USER}', '{HABIT}', DATE '2040-01-01' + g FROM generate_series({}, {}) g",
            day0 + start, day0 + end - 1
        ))
        .execute(pool)
        .await
        .expect("insert");
    }
}

fn spawn(
    bin: &std::path::Path,
    url: &str,
    slot: &str,
    destination: &str,
    e: &convex_emulator::Emulator,
) -> Child {
    Command::new(bin)
        .args(["run", "--destination", destination])
        .env("DATABASE_URL", url)
        .env("CDC_SLOT", slot)
        .env("CDC_PUBLICATION", format!("{slot}_pub"))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("CONVEX_URL", e.url())
        .env("CONVEX_DEPLOY_KEY", e.deploy_key())
        .env("CONVEX_BACKFILL_RPS", "0")
        .env("CONVEX_PARITY_INTERVAL_MS", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cdc")
}

/// Waits for the slot to be confirmed past `lsn`, sampling the process's peak RSS.
async fn drain(
    pool: &sqlx::PgPool,
    slot: &str,
    lsn: &str,
    pid: u32,
    limit: Duration,
) -> (Duration, u64) {
    let started = Instant::now();
    let mut peak = 0;
    while !confirmed_past(pool, slot, lsn).await {
        peak = peak.max(peak_rss_kb(pid));
        assert!(started.elapsed() < limit, "not drained within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (started.elapsed(), peak.max(peak_rss_kb(pid)))
}

async fn streaming(pool: &sqlx::PgPool, slot: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active: Option<bool> =
            sqlx::query_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = $1")
                .bind(slot)
                .fetch_optional(pool)
                .await
                .expect("slot");
        if active == Some(true) {
            return;
        }
        assert!(Instant::now() < deadline, "the daemon did not stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    let bin = benches::release_cdc();
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::start(ClusterOptions {
            settings: vec![("max_wal_size".into(), "8GB".into())],
            ..ClusterOptions::default()
        })
    })
    .await
    .expect("join")
    .expect("cluster");
    let mut env = Env { cluster, n: 0 };
    let mut rows = Vec::new();

    if benches::part(1) {
        let mut rates = Vec::new();
        for destination in ["null", "convex"] {
            let (url, pool, slot) = env.fresh().await;
            let e = emulator(&mirror(), false).await;
            let child = spawn(&bin, &url, &slot, destination, &e);
            streaming(&pool, &slot).await;
            // The slot and the initial copy of the demo rows first; then the backlog.
            let lsn = current_wal_lsn(&pool).await;
            drain(&pool, &slot, &lsn, child.id(), Duration::from_secs(120)).await;
            stop(child);
            insert(&pool, LIVE, 500, 0).await;
            let lsn = current_wal_lsn(&pool).await;
            let before = e.admin().stats();
            let started = Instant::now();
            let child = spawn(&bin, &url, &slot, destination, &e);
            let (_, peak) = drain(&pool, &slot, &lsn, child.id(), Duration::from_secs(600)).await;
            let spent = started.elapsed();
            let rate = LIVE as f64 / spent.as_secs_f64();
            rates.push(rate);
            let stats = e.admin().stats();
            let calls = (stats.mutations - before.mutations) as f64 / LIVE as f64;
            if destination == "convex" {
                let docs = e.admin().table("habit_usage").map_or(0, |t| t.len());
                assert!(docs >= LIVE, "every row mirrored: {docs}");
            }
            rows.push(vec![
                format!("{destination}: a backlog of {LIVE} inserts (500 per transaction)"),
                format!("{rate:.0} changes/s"),
                if destination == "convex" {
                    format!("{calls:.4} calls/change (goal ≤ 0.011)")
                } else {
                    "-".into()
                },
                format!("peak RSS {:.1} MB", peak as f64 / 1024.0),
            ]);
            stop(child);
        }
        let ratio = rates[1] / rates[0];
        rows.push(vec![
            "convex / null".into(),
            format!("{ratio:.2}×"),
            "goal ≥ 0.5×".into(),
            if ratio >= 0.5 { "met".into() } else { "NOT met".into() },
        ]);
    }

    if benches::part(2) {
        let (url, pool, slot) = env.fresh().await;
        insert(&pool, BACKLOG, 50_000, 100_000).await;
        let e = emulator(&mirror(), false).await;
        let started = Instant::now();
        let child = spawn(&bin, &url, &slot, "convex", &e);
        let mut peak = 0;
        while e.admin().table("habit_usage").map_or(0, |t| t.len()) < BACKLOG {
            peak = peak.max(peak_rss_kb(child.id()));
            assert!(started.elapsed() < Duration::from_secs(900), "the copy did not finish");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let spent = started.elapsed();
        let stats = e.admin().stats();
        rows.push(vec![
            format!("convex: initial copy of {BACKLOG} rows (no throttle)"),
            format!("{:.0} rows/s", BACKLOG as f64 / spent.as_secs_f64()),
            format!("{:.4} calls/row", stats.mutations as f64 / BACKLOG as f64),
            format!("peak RSS {:.1} MB", peak as f64 / 1024.0),
        ]);
        stop(child);
    }

    println!("\nConvex mirror (release binary, emulator on loopback, 2 cores)\n");
    print_table(&["measure", "result", "calls", "memory / note"], &rows);
}
