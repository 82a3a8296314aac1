//! The backfill, measured. 20k rows exist before the slot; `cdc run` starts for the first
//! time under Airtable's default limits (5 requests/s per base, one budget for both
//! directions, the inbound side at its production defaults), while live changes and users
//! created in Airtable keep arriving:
//! - backfill records/s against the ceiling of 5 req/s × 10 = 50 (goal ≥ 0.95×), and Airtable
//!   requests per backfilled row (goal ≤ 0.105);
//! - commit → Airtable p95 of live changes made during the backfill (goal ≤ 3 s);
//! - users fast lane p95 during the backfill (goal ≤ 2 s);
//! - peak RSS of the `cdc` binary backfilling 200k rows without limits.
//!
//! `cargo bench -p benches --bench backfill`

use airtable_emulator::{Emulator, RateLimits};
use benches::{cluster_with_database, percentile, print_table};
use serde_json::json;
use std::{
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use testkit::{
    airtable::{
        airtable_config, emulator, mapping, mirror_reference_data, schema_for, start_sync_sharing,
        BASE,
    },
    inbound::start_inbound_sharing,
};

const DEMO: &str = include_str!("../tests/stack/demo.sql");
const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const ROWS: usize = 20_000;

async fn database(name: &str, rows: usize) -> (testkit::Cluster, String, sqlx::PgPool, Emulator) {
    let (cluster, url) = cluster_with_database(&[], name).await;
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.expect("pool");
    schema::postgres::migrate::run(&pool).await.expect("migrate");
    sqlx::raw_sql(DEMO).execute(&pool).await.expect("demo");
    sqlx::query(&format!("INSERT INTO habit_usage (user_id, method_id, date) SELECT '{USER}', '{HABIT}', DATE '2040-01-01' + g FROM generate_series(0, {}) g", rows - 1))
        .execute(&pool)
        .await
        .expect("rows");
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::default()).await;
    mirror_reference_data(&e, BASE, &pool, &mapping()).await;
    (cluster, url, pool, e)
}

async fn open_jobs(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_backfill WHERE state IN ('pending', 'running')")
        .fetch_one(pool)
        .await
        .expect("jobs")
}

/// A live change (a personal goal named `name`): how long until Airtable has it.
async fn live_change(e: &Emulator, pool: &sqlx::PgPool, name: &str) -> Duration {
    let started = Instant::now();
    sqlx::query("INSERT INTO personal_goals (user_id, name) VALUES ($1::uuid, $2)")
        .bind(USER)
        .bind(name)
        .execute(pool)
        .await
        .expect("insert");
    loop {
        let recs = e.admin().records(BASE, "Personal goals").unwrap_or_default();
        if recs.iter().any(|r| r["fields"]["Name"] == json!(name)) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{name} never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A user created in Airtable: how long until Postgres has it.
async fn new_user(e: &Emulator, pool: &sqlx::PgPool, n: usize) -> Duration {
    benches::provision_user(e, pool, &format!("backfill{n}@example.com"), "b").await
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    {
        let (_cluster, url, pool, e) = database("backfill_bench", ROWS).await;
        let mut at = airtable_config(&e);
        at.base_rps = 5;
        at.token_rps = 50;
        at.window = Duration::from_millis(1050);
        at.flush_window = Duration::from_millis(250);
        let budget = Arc::new(at.budget());
        e.admin().reset_stats();
        // No slot yet: the daemon creates it and backfills what exists.
        let sync = start_sync_sharing(
            &url,
            "bench_slot",
            "bench_pub",
            at.clone(),
            mapping(),
            budget.clone(),
        )
        .await;
        let habit_done = |pool: sqlx::PgPool| async move {
            sqlx::query_scalar::<_, i64>("SELECT coalesce(max(rows_done), 0) FROM sync_backfill WHERE table_name = 'habit_usage'")
                .fetch_one(&pool)
                .await
                .expect("rows_done")
        };
        // 1. Quiet: the backfill alone, once under way.
        while habit_done(pool.clone()).await < 1_000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (rows0, stats0, t0) =
            (habit_done(pool.clone()).await, e.admin().stats(), Instant::now());
        tokio::time::sleep(Duration::from_secs(120)).await;
        let (rows1, stats1) = (habit_done(pool.clone()).await, e.admin().stats());
        let quiet_secs = t0.elapsed().as_secs_f64();
        let rate = (rows1 - rows0) as f64 / quiet_secs;
        let requests = stats1.total_requests - stats0.total_requests;
        let per_row = requests as f64 / (rows1 - rows0) as f64;

        // 2. The inbound side at its production defaults, and events.
        let inbound = start_inbound_sharing(&url, at.clone(), budget.clone(), |c| {
            c.base_webhook_gap = Duration::from_secs(5);
            c.webhook_poll = Duration::from_secs(60);
            c.users_poll = Duration::from_secs(60);
            c.poll = Duration::from_secs(120);
        })
        .await;
        let (mut live, mut users) = (Vec::new(), Vec::new());
        let mut n = 0;
        let busy_from = (habit_done(pool.clone()).await, Instant::now());
        while open_jobs(&pool).await > 0 {
            let name = format!("live {n}");
            let (l, u) = tokio::join!(live_change(&e, &pool, &name), new_user(&e, &pool, n));
            live.push(l);
            users.push(u);
            n += 1;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let busy_rate = (habit_done(pool.clone()).await - busy_from.0) as f64
            / busy_from.1.elapsed().as_secs_f64();
        let stats = e.admin().stats();
        let all: (i64, f64) = sqlx::query_as(
            "SELECT sum(rows_done)::bigint, extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM sync_backfill",
        )
        .fetch_one(&pool)
        .await
        .expect("jobs");
        inbound.stop().await;
        sync.stop().await;
        rows.push(vec![
            format!("backfill records/s, quiet ({} rows in {quiet_secs:.0} s)", rows1 - rows0),
            format!("{rate:.1} ({:.3}× of 50)", rate / 50.0),
            "≥ 0.95×".into(),
            if rate / 50.0 >= 0.95 { "yes" } else { "no" }.into(),
        ]);
        rows.push(vec![
            format!("Airtable requests per backfilled row, quiet (all {requests} requests)"),
            format!("{per_row:.4}"),
            "≤ 0.105".into(),
            if per_row <= 0.105 { "yes" } else { "no" }.into(),
        ]);
        rows.push(vec![
            format!("backfill records/s while a live change and a new user arrive every ~2 s (whole run: {} rows in {:.0} s)", all.0, all.1),
            format!("{busy_rate:.1}"),
            "-".into(),
            "the budget is shared".into(),
        ]);
        let l95 = percentile(&mut live, 95.0);
        rows.push(vec![
            format!("live change commit → Airtable during the backfill ({} changes)", live.len()),
            format!("p50 {} ms, p95 {} ms", ms(percentile(&mut live, 50.0)), ms(l95)),
            "p95 ≤ 3000 ms".into(),
            if l95 <= Duration::from_secs(3) { "yes" } else { "no" }.into(),
        ]);
        let u95 = percentile(&mut users, 95.0);
        rows.push(vec![
            format!("users fast lane during the backfill ({} users)", users.len()),
            format!("p50 {} ms, p95 {} ms", ms(percentile(&mut users, 50.0)), ms(u95)),
            "p95 ≤ 2000 ms".into(),
            if u95 <= Duration::from_secs(2) { "yes" } else { "no" }.into(),
        ]);
        rows.push(vec![
            "429 responses".into(),
            stats.rate_limited.to_string(),
            "0".into(),
            if stats.rate_limited == 0 { "yes" } else { "no" }.into(),
        ]);
    }

    // The binary backfilling 200k rows with no limits: its own peak RSS.
    {
        let bin = benches::release_cdc();
        let (_cluster, url, pool, e) = database("backfill_rss", 200_000).await;
        e.admin().set_limits(RateLimits::off());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let started = Instant::now();
        let mut child = testkit::airtable::cdc_run(&bin, &url, "rss_slot", "rss_pub", port, &e)
            .env("AIRTABLE_BASE_RPS", "0")
            .env("AIRTABLE_TOKEN_RPS", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cdc");
        let pid = child.id();
        let mut peak_kb = 0u64;
        // Wait for the jobs to exist, then to finish.
        loop {
            peak_kb = peak_kb.max(benches::peak_rss_kb(pid));
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_backfill WHERE state = 'done' AND table_name = 'habit_usage'")
                .fetch_one(&pool)
                .await
                .unwrap_or(0);
            if done > 0 && open_jobs(&pool).await == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1200),
                "200k rows did not backfill in 20 minutes"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let spent = started.elapsed();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let _ = child.wait();
        rows.push(vec![
            "cdc binary backfilling 200k rows, no limits".into(),
            format!("peak RSS {:.1} MB", peak_kb as f64 / 1024.0),
            "bounded (one chunk)".into(),
            format!("{:.0} rows/s", 200_000.0 / spent.as_secs_f64()),
        ]);
    }

    println!("\nBackfill (emulator on loopback, Airtable's default limits)\n");
    print_table(&["measure", "result", "goal", "met / note"], &rows);
}
