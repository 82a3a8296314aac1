//! `cdc run` as a process against the emulator: a refused token stops the start, alert
//! metrics exist from the start, a token revoked at run time pauses and reports not ready,
//! and fast kill -9 restarts never trip Airtable's penalty.

use super::outbound::{converge, exec, setup};
use airtable_emulator::{Emulator, RateLimits};
use std::{process::Stdio, time::Duration};
use testkit::{
    airtable::{emulator, mapping, schema_for, BASE, TOKEN},
    cargo_bin,
    cdc::{free_port, wait_until},
    metrics_text, test_db, TestDb,
};
use tokio::process::{Child, Command};

const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";

/// `cdc run` against `e`, with the test's slot and publication.
fn daemon(db: &TestDb, e: &Emulator, slot: &str, port: u16, token: &str, base: &str) -> Child {
    let mut c = testkit::airtable::cdc_run(
        &cargo_bin("cdc"),
        &db.url(),
        slot,
        &format!("{slot}_pub"),
        port,
        e,
    );
    c.env("AIRTABLE_TOKEN", token).env("AIRTABLE_BASE_ID", base);
    Command::from(c)
        .env("SYNC_FLUSH_MS", "50")
        // A loaded 2-core CI box can delay a granted request by more than the default 20 ms
        // margin (once seen under the whole suite): these tests are about restarts.
        .env("AIRTABLE_RATE_MARGIN_MS", "100")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cdc")
}

async fn readyz(http: &reqwest::Client, port: u16) -> Option<(u16, String)> {
    let r = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.unwrap_or_default()))
}

#[tokio::test]
async fn a_token_or_base_airtable_refuses_stops_the_start_naming_the_variable() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, _) = setup(&db, &e).await;
    for (token, base) in [("patWRONG", BASE), (TOKEN, "appNOSUCHBASE0001")] {
        let child = daemon(&db, &e, &slot, free_port(), token, base);
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("exits in time")
            .expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{token} {base}: must refuse: {err}");
        assert!(
            err.contains("refusing to start")
                && err.contains("AIRTABLE_TOKEN")
                && err.contains("AIRTABLE_BASE_ID")
                && err.contains("data.records:write"),
            "{err}"
        );
    }
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(dead, 0, "nothing was dead-lettered");
}

#[tokio::test]
async fn alert_metrics_exist_at_zero_and_a_revoked_token_makes_readyz_name_the_cause() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, _) = setup(&db, &e).await;
    let port = free_port();
    let _child = daemon(&db, &e, &slot, port, TOKEN, BASE);
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "ready", || async {
        readyz(&http, port).await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    let text = metrics_text(&http, &format!("http://127.0.0.1:{port}/metrics")).await;
    for series in [
        "cdc_reconnects_total 0",
        "cdc_isolated_changes_total 0",
        "airtable_rate_limited_total 0",
        "airtable_retries_total{op=\"upsert\"} 0",
        "sync_dlq_added_total{direction=\"outbound\",destination=\"airtable\"} 0",
        "sync_dlq_added_total{direction=\"inbound\",destination=\"airtable\"} 0",
        "sync_dlq_added_total{direction=\"outbound\",destination=\"convex\"} 0",
        "sync_reconcile_runs_total 0",
        "sync_reconcile_fixed_total{kind=\"orphan\"} 0",
        "sync_backfill_chunks_total",
        "sync_backfill_jobs_open",
        "sync_parity_drift{",
        "sync_parity_last_run_timestamp_seconds 0",
        "sync_parity_runs_total 0",
        "cdc_destination_paused_total{cause=\"auth\"} 0",
        "cdc_destination_paused 0",
        "cdc_replication_lag_seconds",
    ] {
        assert!(text.lines().any(|l| l.starts_with(series)), "{series} missing:\n{text}");
    }

    e.admin().revoke_token(true);
    exec(&db.pool, &format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', '2043-01-01')")).await;
    wait_until(Duration::from_secs(30), "not ready, naming the cause", || async {
        readyz(&http, port)
            .await
            .is_some_and(|(s, body)| s == 503 && body.contains("AIRTABLE_TOKEN"))
    })
    .await;
    let text = metrics_text(&http, &format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(text.contains("cdc_destination_paused 1"), "{text}");
    e.admin().revoke_token(false);
    wait_until(Duration::from_secs(60), "ready again", || async {
        readyz(&http, port).await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    converge(&e, &db, Duration::from_secs(60)).await;
}

#[tokio::test]
async fn kill_9_and_a_restart_100_ms_later_five_times_under_load_never_gets_a_429() {
    let db = test_db().await;
    // Airtable's real limits: 5 requests a second per base, a 30 s penalty after a 429.
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::default()).await;
    let (slot, _) = setup(&db, &e).await;
    let writer = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            for day in 0..120 {
                exec(&pool, &format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', DATE '2044-01-01' + {day})")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for _ in 0..5 {
        let before = e.admin().request_log().len();
        let mut child = daemon(&db, &e, &slot, free_port(), TOKEN, BASE);
        // Killed once it is sending: the next process starts inside its window.
        wait_until(Duration::from_secs(30), "the daemon sends", || async {
            e.admin().request_log().len() > before
        })
        .await;
        child.start_kill().expect("kill -9");
        let _ = child.wait().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _child = daemon(&db, &e, &slot, free_port(), TOKEN, BASE);
    writer.await.expect("writer");
    converge(&e, &db, Duration::from_secs(180)).await;
    let stats = e.admin().stats();
    if stats.rate_limited > 0 {
        for r in e.admin().request_log() {
            eprintln!("at {} ms: {} {} (epoch {:?})", r.at_ms, r.kind, r.status, r.epoch);
        }
    }
    assert_eq!(stats.rate_limited, 0, "no 429: {:?}", stats.requests);
    assert_eq!(stats.requests_during_penalty, 0);
}

#[tokio::test]
async fn the_daemon_counts_its_own_pings_by_mac_outcome() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, _) = setup(&db, &e).await;
    let port = free_port();
    let _child = daemon(&db, &e, &slot, port, TOKEN, BASE);
    wait_until(Duration::from_secs(30), "the users webhook", || async {
        testkit::inbound::hook_id(&db.pool, "users").await.is_some()
    })
    .await;
    let hook = testkit::inbound::hook_id(&db.pool, "users").await.expect("hook");
    let key = testkit::inbound::hook_key(&db.pool, "users").await;
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/webhooks/airtable");
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let body =
        serde_json::json!({ "base": { "id": BASE }, "webhook": { "id": hook }, "timestamp": now })
            .to_string();
    let send = |mac: Option<String>| {
        let mut r = http.post(&url).body(body.clone());
        if let Some(m) = mac {
            r = r.header("X-Airtable-Content-MAC", m);
        }
        r.send()
    };
    assert_eq!(send(None).await.expect("ping").status().as_u16(), 401);
    for _ in 0..2 {
        let forged = airtable_emulator::mac_header(b"not the secret", body.as_bytes());
        assert_eq!(send(Some(forged)).await.expect("ping").status().as_u16(), 401);
    }
    let good = airtable_emulator::mac_header(&key, body.as_bytes());
    for _ in 0..3 {
        assert_eq!(send(Some(good.clone())).await.expect("ping").status().as_u16(), 200);
    }
    let text = metrics_text(&http, &format!("http://127.0.0.1:{port}/metrics")).await;
    let count = |mac: &str| {
        testkit::series(&text, &format!("inbound_webhook_notifications_total{{mac=\"{mac}\"}}"))
    };
    // Without WEBHOOK_PUBLIC_URL the emulator pings nobody: these are the test's own.
    assert_eq!(
        (count("missing"), count("invalid"), count("valid"), count("replayed")),
        (1.0, 2.0, 1.0, 2.0),
        "{text}"
    );
}
