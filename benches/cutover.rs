//! The cutover, measured with the release `cdc` binary against a legacy base of ~50k records
//! (every mapped table, links everywhere, no pg_id at first) under Airtable's default
//! limits (5 requests/s per base, a 30 s penalty after a 429):
//! - `cdc import`: records/s against the read ceiling of 5 req/s × 100 = 500 (goal ≥ 0.9×),
//!   Airtable requests per imported record (goal ≤ 0.011), peak RSS;
//! - `cdc verify` of the same base, whole and sampled: requests and wall time.
//!
//! `cargo bench -p benches --bench cutover`

use airtable_emulator::RateLimits;
use benches::{cluster_with_database, print_table};
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};
use testkit::{
    airtable::{emulator, BASE, TOKEN},
    legacy,
};

/// 36 records a user across the tables, plus reference data: ~50k records.
const USERS: usize = 1_390;

struct Run {
    ok: bool,
    wall: Duration,
    requests: u64,
    peak_kb: u64,
    stdout: String,
}

async fn cdc(bin: &Path, url: &str, e: &airtable_emulator::Emulator, args: &[&str]) -> Run {
    let before = e.admin().stats().total_requests;
    let started = Instant::now();
    let child = tokio::process::Command::new(bin)
        .args(args)
        .env("DATABASE_URL", url)
        .env("CDC_SLOT", "cutover_slot")
        .env("CDC_PUBLICATION", "cutover_pub")
        .env("AIRTABLE_API_URL", e.url())
        .env("AIRTABLE_TOKEN", TOKEN)
        .env("AIRTABLE_BASE_ID", BASE)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("cdc");
    let pid = child.id().unwrap_or(0);
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        loop {
            let now = benches::peak_rss_kb(pid);
            if now == 0 && peak > 0 {
                return peak;
            }
            peak = peak.max(now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = child.wait_with_output().await.expect("cdc");
    let wall = started.elapsed();
    // The sampler ends once the process is gone (VmHWM only grows: its last read is the peak).
    let peak_kb = tokio::time::timeout(Duration::from_secs(2), sampler)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    Run {
        ok: out.status.success(),
        wall,
        requests: e.admin().stats().total_requests - before,
        peak_kb,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// How many mismatches a verify printed, by kind.
fn drift(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.contains("mismatches by kind"))
        .and_then(|l| l.split_once("by kind: "))
        .map_or_else(|| "0".to_owned(), |(_, k)| k.to_owned())
}

#[tokio::main]
async fn main() {
    let bin = benches::release_cdc();
    let (_cluster, url) = cluster_with_database(&[], "cutover_bench").await;
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    schema::postgres::migrate::run(&pool).await.expect("migrate");
    let e = emulator(legacy::schema(), RateLimits::off()).await;
    let base = legacy::fill(&e, USERS);
    legacy::fix_bad_records(&e, &base);
    let records: usize = base.expected.values().sum();
    e.admin().set_scopes(&[
        "data.records:read",
        "data.records:write",
        "schema.bases:read",
        "schema.bases:write",
        "webhook:manage",
    ]);
    // Airtable's limits from here on.
    e.admin().set_limits(RateLimits::default());
    for args in
        [&["airtable", "check", "--apply"][..], &["publication", "sync"], &["slot", "create"]]
    {
        let r = cdc(&bin, &url, &e, args).await;
        assert!(r.ok, "cdc {args:?}:\n{}", r.stdout);
    }

    let import = cdc(&bin, &url, &e, &["import"]).await;
    assert!(import.ok, "import:\n{}", import.stdout);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM airtable_id_map")
        .fetch_one(&pool)
        .await
        .expect("rows");
    assert_eq!(rows as usize, records, "every record imported");
    let rate = records as f64 / import.wall.as_secs_f64();
    let per_record = import.requests as f64 / records as f64;
    let verify = cdc(&bin, &url, &e, &["verify"]).await;
    let sampled = cdc(&bin, &url, &e, &["verify", "--sample", "100"]).await;
    // What is not derived progress (which waits for `cdc run`), for the note.
    for l in verify.stdout.lines().filter(|l| {
        l.contains(": postgres") && !l.contains("sessions:") && !l.contains("Progress %:")
            || l.ends_with(": missing_in_airtable")
            || l.ends_with(": missing_in_postgres")
            || l.ends_with(": duplicate")
    }) {
        eprintln!("verify: {l}");
    }
    let stats = e.admin().stats();

    let yes = |ok: bool| if ok { "yes" } else { "no" }.to_owned();
    let rows = vec![
        vec![
            format!("import records/s ({records} records in {:.1} s)", import.wall.as_secs_f64()),
            format!("{rate:.0} ({:.3}× of 500)", rate / 500.0),
            "≥ 0.9×".into(),
            yes(rate / 500.0 >= 0.9),
        ],
        vec![
            format!("Airtable requests per imported record ({} requests)", import.requests),
            format!("{per_record:.4}"),
            "≤ 0.011".into(),
            yes(per_record <= 0.011),
        ],
        vec![
            "import peak RSS".into(),
            format!("{:.1} MB", import.peak_kb as f64 / 1024.0),
            "bounded (one page at a time)".into(),
            "-".into(),
        ],
        vec![
            "verify, every field of every record".into(),
            format!("{} requests, {:.1} s", verify.requests, verify.wall.as_secs_f64()),
            "exit 1 before `cdc run`: derived progress".into(),
            format!("{} mismatches", drift(&verify.stdout)),
        ],
        vec![
            "verify --sample 100 (exact counts)".into(),
            format!("{} requests, {:.1} s", sampled.requests, sampled.wall.as_secs_f64()),
            "same; counts exact".into(),
            format!("{} mismatches", drift(&sampled.stdout)),
        ],
        vec![
            "429 responses".into(),
            stats.rate_limited.to_string(),
            "0".into(),
            yes(stats.rate_limited == 0),
        ],
    ];
    println!("\nCutover (release cdc, emulator on loopback, Airtable's default limits)\n");
    print_table(&["measure", "result", "goal", "met / note"], &rows);
}
