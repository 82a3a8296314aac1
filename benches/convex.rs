//! The Convex mirror, measured with the release binary on the same stream as the null
//! destination: `cdc run --destination convex` into the emulator (loopback, no latency)
//! against `cdc run --destination null`, each on a fresh database, its own slot.
//! 1. A stream backlog: 100k rows inserted (500 per transaction) while the daemon is stopped
//!    on its slot, then a daemon started: changes per second from its start until the slot is
//!    confirmed past them (the writer is out of the measure), mutation calls per change, peak
//!    RSS, where the CPU went; three alternated rounds, medians compared.
//! 2. A backlog from before the slot (200k rows): the initial copy's rows per second and
//!    peak RSS.
//!
//! `cargo bench -p benches --bench convex`

use benches::{cpu_seconds, peak_rss_kb, print_table};
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use testkit::{
    cdc::{confirmed_past, current_wal_lsn, free_port},
    convex::{emulator, mirror},
    Cluster,
};

const LIVE: usize = 100_000;
const BACKLOG: usize = 200_000;

struct Env {
    cluster: Cluster,
    n: usize,
}

impl Env {
    async fn fresh(&mut self) -> (String, sqlx::PgPool, String) {
        self.n += 1;
        let (url, pool) =
            benches::demo_database(&self.cluster, &format!("convex{}", self.n), 4).await;
        (url, pool, format!("bench_convex_{}", self.n))
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
        // The slot's position is reported on this timer: at its default (1 s) a run of about
        // a second would measure the timer's phase, not the daemon.
        .env("CDC_STATUS_INTERVAL_MS", "100")
        .env("RUST_LOG", std::env::var("BENCH_RUST_LOG").unwrap_or("warn".into()))
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

const ROUNDS: usize = 3;
const DESTINATIONS: [&str; 2] = ["null", "convex"];

/// One backlog run's figures.
struct Backlog {
    rate: f64,
    calls: f64,
    peak_kb: u64,
    /// CPU seconds: the daemon, its walsender, this process (the emulator).
    cpu: [f64; 3],
    spent: Duration,
}

/// Part 1 once: a fresh database, a daemon stopped on its slot, the backlog inserted, a
/// daemon started and timed until the slot is confirmed past it.
async fn backlog(env: &mut Env, bin: &std::path::Path, destination: &str) -> Backlog {
    let (url, pool, slot) = env.fresh().await;
    let e = emulator(&mirror(), false).await;
    let child = spawn(bin, &url, &slot, destination, &e);
    streaming(&pool, &slot).await;
    // The slot and the initial copy of the demo rows first; then the backlog.
    let lsn = current_wal_lsn(&pool).await;
    drain(&pool, &slot, &lsn, child.id(), Duration::from_secs(120)).await;
    stop(child);
    benches::insert_habit_days(&pool, LIVE, 500, 0).await;
    let lsn = current_wal_lsn(&pool).await;
    let before = e.admin().stats();
    let started = Instant::now();
    let child = spawn(bin, &url, &slot, destination, &e);
    let own_before = cpu_seconds(std::process::id());
    let (_, peak_kb) = drain(&pool, &slot, &lsn, child.id(), Duration::from_secs(600)).await;
    let spent = started.elapsed();
    let walsender: Option<i32> =
        sqlx::query_scalar("SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1")
            .bind(&slot)
            .fetch_one(&pool)
            .await
            .expect("walsender");
    let cpu = [
        cpu_seconds(child.id()),
        walsender.map_or(0.0, |p| cpu_seconds(p as u32)),
        cpu_seconds(std::process::id()) - own_before,
    ];
    let calls = (e.admin().stats().mutations - before.mutations) as f64 / LIVE as f64;
    if destination == "convex" {
        let docs = e.admin().table("habit_usage").map_or(0, |t| t.len());
        assert!(docs >= LIVE, "every row mirrored: {docs}");
    }
    stop(child);
    // An idle slot would hold the WAL of the rounds after it.
    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(&slot)
        .execute(&pool)
        .await
        .expect("drop slot");
    pool.close().await;
    Backlog { rate: LIVE as f64 / spent.as_secs_f64(), calls, peak_kb, cpu, spent }
}

#[tokio::main]
async fn main() {
    let bin = benches::release_cdc();
    let cluster = benches::cluster(&[("max_wal_size", "8GB")]).await;
    let mut env = Env { cluster, n: 0 };
    let mut rows = Vec::new();

    if benches::part(1) {
        // Alternated rounds, the median of three compared: a run's figure moves with where
        // the status timer and the idle tick fall.
        let mut runs: [Vec<Backlog>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..ROUNDS {
            for (i, destination) in DESTINATIONS.iter().enumerate() {
                runs[i].push(backlog(&mut env, &bin, destination).await);
            }
        }
        let mut medians = Vec::new();
        for (destination, mut runs) in DESTINATIONS.iter().zip(runs) {
            let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.rate)).collect();
            runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let m = &runs[runs.len() / 2];
            medians.push(m.rate);
            rows.push(vec![
                format!("{destination}: a backlog of {LIVE} inserts (500 per transaction), median of {ROUNDS}"),
                format!("{:.0} changes/s (runs: {})", m.rate, all.join(", ")),
                if *destination == "convex" {
                    format!("{:.4} calls/change (goal ≤ 0.011)", m.calls)
                } else {
                    "-".into()
                },
                format!(
                    "peak RSS {:.1} MB; CPU s: daemon {:.2}, walsender {:.2}, emulator {:.2} in {:.2} s",
                    m.peak_kb as f64 / 1024.0,
                    m.cpu[0],
                    m.cpu[1],
                    m.cpu[2],
                    m.spent.as_secs_f64()
                ),
            ]);
        }
        let ratio = medians[1] / medians[0];
        rows.push(vec![
            "convex / null (medians)".into(),
            format!("{ratio:.2}×"),
            "goal ≥ 0.5×".into(),
            if ratio >= 0.5 { "met".into() } else { "NOT met".into() },
        ]);
    }

    if benches::part(2) {
        let (url, pool, slot) = env.fresh().await;
        benches::insert_habit_days(&pool, BACKLOG, 50_000, 100_000).await;
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
