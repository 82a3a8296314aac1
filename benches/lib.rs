//! Shared helpers for the benchmarks: percentiles and table printing.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Whether part `n` of a bench runs: BENCH_PARTS (e.g. `3,4`) picks parts; unset runs all.
pub fn part(n: u32) -> bool {
    std::env::var("BENCH_PARTS").map_or(true, |v| v.split(',').any(|p| p.trim() == n.to_string()))
}

/// Prints a Markdown table (pasteable into an issue note).
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}|", headers.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// A throwaway cluster with `settings`.
pub async fn cluster(settings: &[(&str, &str)]) -> testkit::Cluster {
    let settings: Vec<(String, String)> =
        settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    tokio::task::spawn_blocking(move || {
        testkit::Cluster::start(testkit::ClusterOptions {
            settings,
            ..testkit::ClusterOptions::default()
        })
    })
    .await
    .expect("join")
    .expect("cluster")
}

/// A throwaway cluster with `settings` and a fresh database `name` on it; returns both and the
/// database's URL.
pub async fn cluster_with_database(
    settings: &[(&str, &str)],
    name: &str,
) -> (testkit::Cluster, String) {
    let cluster = cluster(settings).await;
    let admin = sqlx::PgPool::connect(&cluster.url("postgres")).await.expect("admin");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("database");
    admin.close().await;
    let url = cluster.url(name);
    (cluster, url)
}

/// Peak resident set (VmHWM) of process `pid` in kB; 0 when it cannot be read.
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system, every thread) process `pid` has used: `/proc/{pid}/stat`
/// fields 14 and 15, in clock ticks of 1/100 s (Linux's USER_HZ).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 =
        after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// Builds the release `cdc` binary; returns its path.
/// A database `name` with the demo data, the emulator under Airtable's limits holding the
/// demo's reference data, and a slot `{prefix}_slot` with publication `{prefix}_pub`. With
/// `migrate_with`, that `cdc` binary migrates (an older build knows only its own migrations).
pub async fn demo_stack(
    name: &str,
    prefix: &str,
    migrate_with: Option<&std::path::Path>,
) -> (testkit::Cluster, String, sqlx::PgPool, airtable_emulator::Emulator) {
    use testkit::airtable::{emulator, mapping, mirror_reference_data, schema_for, BASE};
    let (cluster, url) = cluster_with_database(&[], name).await;
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(8).connect(&url).await.expect("pool");
    match migrate_with {
        Some(bin) => {
            let ok = tokio::process::Command::new(bin)
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .status()
                .await
                .expect("cdc migrate");
            assert!(ok.success(), "{} migrate failed", bin.display());
        }
        None => {
            schema::postgres::migrate::run(&pool).await.expect("migrate");
        }
    }
    sqlx::raw_sql(include_str!("../tests/stack/demo.sql")).execute(&pool).await.expect("demo");
    let e =
        emulator(schema_for(&mapping(), |_| {}), airtable_emulator::RateLimits::default()).await;
    mirror_reference_data(&e, BASE, &pool, &mapping()).await;
    let tables: Vec<String> = mapping().published_tables().into_iter().map(|(_, t)| t).collect();
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    testkit::cdc::prepare(&url, &format!("{prefix}_pub"), &tables, &format!("{prefix}_slot")).await;
    (cluster, url, pool, e)
}

/// A fresh database `name` on `cluster`, migrated, with the demo data; its URL and a pool of
/// `connections`.
pub async fn demo_database(
    cluster: &testkit::Cluster,
    name: &str,
    connections: u32,
) -> (String, sqlx::PgPool) {
    let admin = sqlx::PgPool::connect(&cluster.url("postgres")).await.expect("admin");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("database");
    admin.close().await;
    let url = cluster.url(name);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(&url)
        .await
        .expect("pool");
    schema::postgres::migrate::run(&pool).await.expect("migrate");
    sqlx::raw_sql(include_str!("../tests/stack/demo.sql")).execute(&pool).await.expect("demo");
    (url, pool)
}

/// The demo's user and one of its habits.
pub const DEMO_USER: &str = "00000000-0000-4000-8000-000000000701";
pub const DEMO_HABIT: &str = "00000000-0000-4000-8000-000000000403";

/// `n` habit days of the demo user (days `day0`.. from 2040-01-01), `per_tx` a transaction.
pub async fn insert_habit_days(pool: &sqlx::PgPool, n: usize, per_tx: usize, day0: usize) {
    for start in (0..n).step_by(per_tx) {
        let end = (start + per_tx).min(n);
        sqlx::query(&format!(
            "INSERT INTO habit_usage (user_id, method_id, date) SELECT '{DEMO_USER}', '{DEMO_HABIT}', DATE '2040-01-01' + g FROM generate_series({}, {}) g",
            day0 + start, day0 + end - 1
        ))
        .execute(pool)
        .await
        .expect("insert");
    }
}

pub fn release_cdc() -> std::path::PathBuf {
    let built = std::process::Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "cdc", "--bin", "cdc"])
        .status()
        .expect("cargo build");
    assert!(built.success(), "the release build failed");
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/cdc")
}

/// Creates a user in Airtable as an admin would; returns how long until Postgres has it.
pub async fn provision_user(
    e: &airtable_emulator::Emulator,
    pool: &sqlx::PgPool,
    email: &str,
    name: &str,
) -> Duration {
    let started = std::time::Instant::now();
    e.admin()
        .create_records(testkit::airtable::BASE, "Users", vec![serde_json::json!({ "Email": email, "Name": name, "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    loop {
        let found: Option<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(pool)
            .await
            .expect("lookup");
        if found.is_some() {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{email} never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
