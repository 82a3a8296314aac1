//! What an idle daemon costs in Airtable calls (Team plan: 100,000 a month per workspace).
//! `cdc run` (release, default settings) runs against the emulator with the demo data, with
//! a webhook notification URL and without one, both at once; after a warm-up, every
//! Airtable request it sends in BENCH_IDLE_SECONDS (600) is counted by kind and
//! extrapolated to a day. Work scheduled less often than the window (daily reconciles and
//! parity checks, 6-hourly polls) does not show in it: the warm-up column, where the start
//! runs each of them once, gives its cost per run. After the window: users provisioned
//! one by one (p95 to Postgres), and a user whose ping is lost (time to notice).
//!
//! `cargo bench -p benches --bench idle` (BENCH_CDC_BIN: another cdc binary, e.g. an older
//! build, to compare)

use airtable_emulator::Emulator;
use benches::print_table;
use std::{collections::BTreeMap, process::Stdio, time::Duration};
use testkit::cdc::free_port;

struct Case {
    label: &'static str,
    by_kind: BTreeMap<String, u64>,
    warmup: BTreeMap<String, u64>,
    users_p95_ms: Option<f64>,
    lost_ping: Duration,
}

fn by_kind(e: &Emulator) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (key, n) in e.admin().stats().requests {
        let kind = key.split(' ').next().unwrap_or_default().to_owned();
        *out.entry(kind).or_default() += n;
    }
    out
}

async fn run(label: &'static str, public_url: bool, window: Duration) -> Case {
    let other: Option<std::path::PathBuf> = std::env::var("BENCH_CDC_BIN").ok().map(Into::into);
    let bin = other.clone().unwrap_or_else(benches::release_cdc);
    let (_cluster, url, pool, e) =
        benches::demo_stack(&format!("idle_{}", public_url as u8), "idle", other.as_deref()).await;
    let port = free_port();
    let mut cmd = tokio::process::Command::from(testkit::airtable::cdc_run(
        &bin,
        &url,
        "idle_slot",
        "idle_pub",
        port,
        &e,
    ));
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    if public_url {
        cmd.env("WEBHOOK_PUBLIC_URL", format!("http://127.0.0.1:{port}/webhooks/airtable"));
    }
    let _child = cmd.spawn().expect("cdc run");
    // Warm-up: the start (webhooks, the first reconcile of every table, the backfill of the
    // demo data) until the request rate is that of an idle daemon.
    tokio::time::sleep(Duration::from_secs(180)).await;
    let warmup = by_kind(&e);
    e.admin().reset_stats();
    tokio::time::sleep(window).await;
    let counted = by_kind(&e);
    // Then users, one by one, as an admin adds them.
    let mut lat = Vec::new();
    for n in 0..10 {
        lat.push(benches::provision_user(&e, &pool, &format!("idle{n}@example.com"), "Idle").await);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    lat.sort();
    let users_p95_ms = Some(lat[8].as_secs_f64() * 1000.0);
    // A users ping lost: how long until the user is in Postgres anyway.
    e.admin().lose_pings(true);
    let lost_ping = benches::provision_user(&e, &pool, "lost@example.com", "Lost").await;
    e.admin().lose_pings(false);
    Case { label, by_kind: counted, warmup, users_p95_ms, lost_ping }
}

#[tokio::main]
async fn main() {
    let window = Duration::from_secs(
        std::env::var("BENCH_IDLE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(600),
    );
    let (with_url, without) = tokio::join!(
        run("with a notification URL", true, window),
        run("without one (payloads polled)", false, window)
    );
    let per_day = 86_400.0 / window.as_secs_f64();
    let mut rows = Vec::new();
    for case in [&with_url, &without] {
        let total: u64 = case.by_kind.values().sum();
        for (kind, n) in &case.by_kind {
            rows.push(vec![
                case.label.to_owned(),
                kind.clone(),
                n.to_string(),
                format!("{:.0}", *n as f64 * per_day),
                case.warmup.get(kind).copied().unwrap_or(0).to_string(),
            ]);
        }
        rows.push(vec![
            case.label.to_owned(),
            "**total**".into(),
            total.to_string(),
            format!("**{:.0}**", total as f64 * per_day),
            case.warmup.values().sum::<u64>().to_string(),
        ]);
    }
    println!(
        "\nIdle Airtable calls, release cdc with default settings, {} s window after a 180 s warm-up (the warm-up column: the start, which runs every reconcile once)\n",
        window.as_secs()
    );
    print_table(
        &["case", "kind", "calls in window", "per day (extrapolated)", "calls in warm-up"],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = [&with_url, &without]
        .iter()
        .map(|c| {
            vec![
                c.label.to_owned(),
                c.users_p95_ms.map_or("-".into(), |v| format!("{v:.0} ms")),
                format!("{:.1} s", c.lost_ping.as_secs_f64()),
            ]
        })
        .collect();
    print_table(
        &[
            "case",
            "users p95, 10 users (goal ≤ 2 s with a URL)",
            "a lost users ping noticed (goal ≤ 60 s)",
        ],
        &rows,
    );
}
