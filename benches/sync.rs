//! The Airtable destination, measured side by side in one run:
//! - Airtable requests per changed row: bulk inserts (goal ≤ 0.11), 10k updates over 100 rows
//!   within 5 s (goal ≤ 0.05);
//! - records/s under Airtable's default limits with a backlog (goal ≥ 45 per base);
//! - commit → visible-in-Airtable latency at 1k changes/s with limits off (p50, p99);
//! - peak RSS of the `cdc` binary draining a 1M-row backlog (goal ≤ 150 MB).
//!
//! `cargo bench -p benches --bench sync` (BENCH_PARTS=3,4 runs parts 3 and 4 only)

use airtable_emulator::{Emulator, RateLimits};
use benches::{percentile, print_table};
use std::{
    collections::HashMap,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use testkit::{
    airtable::{
        airtable_config, emulator, mapping, mirror_reference_data, schema_for, start_sync, BASE,
    },
    cdc::prepare,
    Cluster,
};

use benches::DEMO_USER as USER;
const METHOD: &str = "00000000-0000-4000-8000-000000000401";

/// 100 method usage rows whose remark the hot-row benches rewrite.
async fn hot_rows(pool: &sqlx::PgPool) {
    sqlx::query(&format!("INSERT INTO method_usage (user_id, method_id, used_on, remark) SELECT '{USER}', '{METHOD}', DATE '2040-01-01' + g, '-1' FROM generate_series(0, 99) g"))
        .execute(pool)
        .await
        .expect("hot rows");
}

/// Remarks of the hot rows in Airtable, by pg id.
fn remarks(e: &Emulator) -> HashMap<String, i64> {
    e.admin()
        .records(BASE, "Method usage")
        .expect("records")
        .iter()
        .filter_map(|r| {
            Some((
                r["fields"]["pg_id"].as_str()?.to_owned(),
                r["fields"]["Remark"].as_str()?.parse().ok()?,
            ))
        })
        .collect()
}

struct Env {
    cluster: Cluster,
    n: usize,
}

impl Env {
    /// A fresh database with demo data, an emulator with its reference data, and a slot.
    async fn fresh(
        &mut self,
        limits: RateLimits,
    ) -> (String, sqlx::PgPool, Emulator, String, String) {
        self.n += 1;
        let (url, pool) =
            benches::demo_database(&self.cluster, &format!("bench{}", self.n), 8).await;
        let e = emulator(schema_for(&mapping(), |_| {}), limits).await;
        mirror_reference_data(&e, BASE, &pool, &mapping()).await;
        let slot = format!("bench_slot_{}", self.n);
        let publication = format!("bench_pub_{}", self.n);
        let tables: Vec<String> =
            mapping().published_tables().into_iter().map(|(_, t)| t).collect();
        let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
        prepare(&url, &publication, &tables, &slot).await;
        (url, pool, e, slot, publication)
    }
}

async fn count_records(e: &Emulator, table: &str) -> usize {
    e.admin().records(BASE, table).map(|r| r.len()).unwrap_or(0)
}

async fn wait_records(e: &Emulator, table: &str, n: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    while count_records(e, table).await < n {
        assert!(started.elapsed() < limit, "{table}: fewer than {n} records after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let cluster = benches::cluster(&[("max_wal_size", "8GB")]).await;
    let mut env = Env { cluster, n: 0 };
    let mut rows = Vec::new();

    // 1. Bulk inserts: requests per row.
    if benches::part(1) {
        let (url, pool, e, slot, publication) = env.fresh(RateLimits::off()).await;
        let sync = start_sync(&url, &slot, &publication, airtable_config(&e), mapping()).await;
        e.admin().reset_stats();
        benches::insert_habit_days(&pool, 10_000, 500, 0).await;
        let t = wait_records(&e, "Habit usage", 10_000, Duration::from_secs(300)).await;
        let requests = e.admin().stats().total_requests as f64;
        rows.push(vec![
            "bulk insert, 10k rows (500 per transaction)".into(),
            format!("{:.3}", requests / 10_000.0),
            "≤ 0.11".into(),
            format!("{:.0} rows/s", 10_000.0 / t.as_secs_f64()),
        ]);
        sync.stop().await;
    }

    // 2. Hot rows: 10k updates over 100 rows within 5 s.
    if benches::part(2) {
        let (url, pool, e, slot, publication) = env.fresh(RateLimits::off()).await;
        let sync = start_sync(&url, &slot, &publication, airtable_config(&e), mapping()).await;
        hot_rows(&pool).await;
        wait_records(&e, "Method usage", 100, Duration::from_secs(60)).await;
        e.admin().reset_stats();
        let started = Instant::now();
        for round in 0..100u64 {
            sqlx::query(&format!(
                "UPDATE method_usage SET remark = '{round}' WHERE used_on >= DATE '2040-01-01'"
            ))
            .execute(&pool)
            .await
            .expect("update");
            let next = Duration::from_millis(50 * (round + 1));
            if let Some(wait) = next.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let spent = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && !remarks(&e).values().all(|r| *r == 99) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let requests = e.admin().stats().total_requests as f64;
        rows.push(vec![
            format!("10k updates over 100 rows in {:.1} s", spent.as_secs_f64()),
            format!("{:.3}", requests / 10_000.0),
            "≤ 0.05".into(),
            String::new(),
        ]);
        sync.stop().await;
    }

    // 3. Default limits (5 requests/s per base) with a backlog.
    if benches::part(3) {
        let (url, pool, e, slot, publication) = env.fresh(RateLimits::default()).await;
        benches::insert_habit_days(&pool, 1_000, 1_000, 0).await;
        let mut config = airtable_config(&e);
        config.base_rps = 5;
        config.token_rps = 50;
        let sync = start_sync(&url, &slot, &publication, config, mapping()).await;
        // Measure the steady state: from the 100th record to the 1000th.
        wait_records(&e, "Habit usage", 100, Duration::from_secs(120)).await;
        let t = wait_records(&e, "Habit usage", 1_000, Duration::from_secs(120)).await;
        let stats = e.admin().stats();
        rows.push(vec![
            "backlog under Airtable's limits (5 req/s)".into(),
            format!("{:.1} records/s", 900.0 / t.as_secs_f64()),
            "≥ 45 records/s".into(),
            format!("{} × 429, {} in a penalty", stats.rate_limited, stats.requests_during_penalty),
        ]);
        sync.stop().await;
    }

    // 4. Commit -> visible latency at 1k changes/s, limits off.
    if benches::part(4) {
        let (url, pool, e, slot, publication) = env.fresh(RateLimits::off()).await;
        let sync = start_sync(&url, &slot, &publication, airtable_config(&e), mapping()).await;
        hot_rows(&pool).await;
        wait_records(&e, "Method usage", 100, Duration::from_secs(60)).await;
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT id FROM method_usage WHERE used_on >= DATE '2040-01-01' ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .expect("ids");
        // Change i sets row (i % 100)'s remark to i; it is visible once Airtable shows that
        // row at a remark >= i.
        let commits = Arc::new(std::sync::Mutex::new(HashMap::<usize, Instant>::new()));
        let writer = {
            let pool = pool.clone();
            let commits = commits.clone();
            let ids = ids.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                for batch in 0..1_000usize {
                    // Postgres's default durability (test clusters commit asynchronously):
                    // an asynchronous commit reaches the walsender only when the WAL writer
                    // flushes it, every wal_writer_delay (200 ms), and that is not the
                    // daemon's latency.
                    let mut sql = String::from("BEGIN; SET LOCAL synchronous_commit = on;");
                    for k in 0..10 {
                        let i = batch * 10 + k;
                        sql += &format!(
                            "UPDATE method_usage SET remark = '{i}' WHERE id = '{}';",
                            ids[i % 100]
                        );
                    }
                    sql += "COMMIT;";
                    sqlx::raw_sql(&sql).execute(&pool).await.expect("update");
                    let now = Instant::now();
                    {
                        let mut c = commits.lock().expect("lock");
                        for k in 0..10 {
                            c.insert(batch * 10 + k, now);
                        }
                    }
                    let next = Duration::from_millis(10 * (batch as u64 + 1));
                    if let Some(wait) = next.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            })
        };
        let mut seen_at: HashMap<usize, Instant> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen_at.len() < 10_000 && Instant::now() < deadline {
            let now = Instant::now();
            let latest = remarks(&e);
            let committed: Vec<usize> = commits
                .lock()
                .expect("lock")
                .keys()
                .copied()
                .filter(|i| !seen_at.contains_key(i))
                .collect();
            for i in committed {
                if latest.get(&ids[i % 100].to_string()).is_some_and(|r| *r >= i as i64) {
                    seen_at.insert(i, now);
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        writer.await.expect("writer");
        let commits = commits.lock().expect("lock").clone();
        let mut lat: Vec<Duration> = seen_at
            .iter()
            .filter_map(|(i, t)| commits.get(i).map(|c| t.saturating_duration_since(*c)))
            .collect();
        rows.push(vec![
            format!("commit → visible, 1k changes/s for 10 s ({} samples)", lat.len()),
            format!("p50 {:.0} ms", percentile(&mut lat, 50.0).as_secs_f64() * 1000.0),
            format!("p99 {:.0} ms", percentile(&mut lat, 99.0).as_secs_f64() * 1000.0),
            "flush window 50 ms".into(),
        ]);
        sync.stop().await;
    }

    // 5. The cdc binary draining a 1M-row backlog: its own peak RSS.
    if benches::part(5) {
        let bin = benches::release_cdc();
        let (url, pool, e, slot, publication) = env.fresh(RateLimits::off()).await;
        for chunk in 0..10 {
            benches::insert_habit_days(&pool, 100_000, 100_000, chunk * 100_000).await;
        }
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let started = Instant::now();
        let mut child =
            testkit::airtable::cdc_run(&bin, &url, &slot, &publication, metrics_port, &e)
                .env("AIRTABLE_BASE_RPS", "0")
                .env("AIRTABLE_TOKEN_RPS", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cdc");
        let pid = child.id();
        let mut peak_kb = 0u64;
        while count_records(&e, "Habit usage").await < 1_000_000 {
            peak_kb = peak_kb.max(benches::peak_rss_kb(pid));
            assert!(
                started.elapsed() < Duration::from_secs(1200),
                "1M rows did not drain in 20 minutes"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let spent = started.elapsed();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let _ = child.wait();
        rows.push(vec![
            "cdc binary draining a 1M-row backlog".into(),
            format!("peak RSS {:.1} MB", peak_kb as f64 / 1024.0),
            "≤ 150 MB".into(),
            format!("{:.0} rows/s", 1_000_000.0 / spent.as_secs_f64()),
        ]);
    }

    println!("\nAirtable destination (emulator on loopback)\n");
    print_table(&["measure", "result", "goal", "note"], &rows);
}
