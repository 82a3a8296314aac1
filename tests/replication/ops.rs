use cdc::{config::CdcConfig, destination::MemoryDestination, run::Daemon};
use std::{process::Command, time::Duration};
use testkit::{cargo_bin, cdc::wait_until, empty_db, test_db, Cluster, ClusterOptions, TestDb};

fn cdc(db_url: &str, slot: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cargo_bin("cdc"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("CDC_SLOT", slot)
        .env("CDC_PUBLICATION", format!("{slot}_pub"))
        .env("LOG_FORMAT", "text")
        .output()
        .expect("run cdc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cdc_check_flags_a_cluster_without_logical_decoding_and_prints_the_fix() {
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::start(ClusterOptions { wal_level: "replica".into(), ..ClusterOptions::default() })
    })
    .await
    .expect("join")
    .expect("cluster");
    let (ok, out, err) = cdc(&cluster.url("postgres"), "check_slot", &["check"]);
    assert!(!ok, "check must fail: {out}");
    assert!(out.contains("FAIL  wal_level"), "{out}");
    assert!(out.contains("ALTER SYSTEM SET wal_level = logical"), "{out}");
    assert!(out.contains("max_slot_wal_keep_size"), "{out}");
    assert!(err.contains("check(s) failed"), "{err}");
}

#[tokio::test]
async fn cdc_check_tells_what_run_creates_and_advice_from_failures_and_prints_no_logs() {
    let db = test_db().await;
    let slot = testkit::cdc::slot_name();
    let (ok, out, err) = cdc(&db.url(), &slot, &["check"]);
    assert!(ok, "a fresh setup passes: {out}{err}");
    assert!(out.contains("NEW   publication") && out.contains("cdc run creates it"), "{out}");
    assert!(out.contains("NEW   slot"), "{out}");
    assert!(out.contains("WARN  max_slot_wal_keep_size"), "{out}");
    assert!(out.contains("ALTER SYSTEM SET max_slot_wal_keep_size"), "the SQL to run: {out}");
    // Test clusters commit asynchronously: the stream's latency grows by the WAL writer's.
    assert!(out.contains("WARN  synchronous_commit") && out.contains("wal_writer_delay"), "{out}");
    // PostgreSQL 15 has no failover slots: check says what a failover costs and the way back.
    assert!(out.contains("WARN  failover slot") && out.contains("cdc slot recover"), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(err.is_empty(), "an operator command prints its result and nothing else: {err}");
    let (ok, _, err) = cdc(&db.url(), &slot, &["check", "--strict"]);
    assert!(!ok && err.contains("(--strict)"), "{err}");
    let (ok, out, err) = cdc(&db.url(), &slot, &["slot", "create"]);
    assert!(ok && out.starts_with("created slot") && err.is_empty(), "{out}{err}");
}

#[tokio::test]
async fn publication_sync_and_slot_commands_work_through_the_cli() {
    let db = test_db().await;
    let slot = testkit::cdc::slot_name();
    let url = db.url();

    let (ok, out, _) = cdc(&url, &slot, &["publication", "sync"]);
    assert!(ok && out.contains("created publication"), "{out}");
    let (ok, out, _) = cdc(&url, &slot, &["publication", "sync"]);
    assert!(ok && out.contains("already holds exactly"), "{out}");
    // Drift is repaired: a table removed by hand comes back.
    sqlx::query(&format!("ALTER PUBLICATION \"{slot}_pub\" DROP TABLE habit_usage"))
        .execute(&db.pool)
        .await
        .expect("drift");
    let (ok, out, _) = cdc(&url, &slot, &["publication", "sync"]);
    assert!(ok && out.contains("added [\"public.habit_usage\"]"), "{out}");

    let (ok, _, err) = cdc(&url, &slot, &["slot", "status"]);
    assert!(!ok && err.contains("cdc slot create"), "{err}");
    let (ok, out, _) = cdc(&url, &slot, &["slot", "create"]);
    assert!(ok && out.contains("created slot"), "{out}");
    let (ok, out, _) = cdc(&url, &slot, &["slot", "create"]);
    assert!(ok && out.contains("already exists"), "{out}");
    let (ok, out, _) = cdc(&url, &slot, &["slot", "status", "--json"]);
    assert!(ok, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(status["wal_status"], "reserved");
    assert!(
        status["confirmed_flush_lsn"].is_string()
            && status["lag_bytes"].is_number()
            && status["retained_bytes"].is_number()
    );

    let (ok, _, err) = cdc(&url, &slot, &["slot", "drop"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, _) = cdc(&url, &slot, &["slot", "drop", "--yes"]);
    assert!(ok && out.contains("dropped"), "{out}");

    let (ok, _, err) = cdc(&url, "Bad-Name", &["slot", "status"]);
    assert!(!ok && err.contains("CDC_SLOT"), "{err}");
}

fn daemon_config(db: &TestDb, slot: &str) -> CdcConfig {
    testkit::cdc::daemon_config(&db.url(), slot, &format!("{slot}_pub"))
}

#[tokio::test]
async fn the_daemon_refuses_an_unmigrated_database() {
    let db = empty_db().await;
    let err = Daemon::build(
        &daemon_config(&db, "never_created"),
        &testkit::airtable::mapping(),
        MemoryDestination::new(),
        None,
    )
    .await
    .err()
    .expect("refused");
    assert!(format!("{err:#}").contains("cdc migrate"), "{err:#}");
}

#[tokio::test]
async fn the_daemon_creates_slot_and_publication_serves_health_and_metrics_and_stops_cleanly() {
    let db = test_db().await;
    let slot = testkit::cdc::slot_name();
    let dest = MemoryDestination::new();
    let log = dest.log.clone();
    let daemon =
        Daemon::build(&daemon_config(&db, &slot), &testkit::airtable::mapping(), dest, None)
            .await
            .expect("builds");
    let base = format!("http://{}", daemon.ops_addr());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(daemon.run_until(rx));
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{base}/healthz")).send().await.expect("healthz").status(), 200);
    wait_until(Duration::from_secs(20), "readyz 200", || async {
        http.get(format!("{base}/readyz")).send().await.map(|r| r.status() == 200).unwrap_or(false)
    })
    .await;

    sqlx::raw_sql(include_str!("../stack/demo.sql")).execute(&db.pool).await.expect("demo data");
    // The metrics registry is the process's, shared with other tests' daemons: this
    // daemon's own log says when it has streamed something.
    let streamed_a_program = || {
        log.lock().expect("log").events.iter().any(
            |e| matches!(e, cdc::replication::Event::Change(c) if c.relation.name == "programs"),
        )
    };
    wait_until(Duration::from_secs(20), "metrics for streamed events and lag", || async {
        let body = testkit::metrics_text(&http, &format!("{base}/metrics")).await;
        streamed_a_program()
            && body.contains("cdc_events_total{table=\"programs\",op=\"insert\"}")
            && body.contains("cdc_replication_lag_bytes")
            && body.contains("cdc_slot_wal_status{status=\"reserved\"} 1")
    })
    .await;
    let _ = tx.send(true);
    let dest = task.await.expect("join").expect("clean stop");
    // The final position was written to the slot on the way out.
    let acked = cdc::destination::Destination::acknowledged(&dest).to_string();
    assert!(
        testkit::cdc::confirmed_past(&db.pool, &slot, &acked).await,
        "the slot holds the acknowledged position {acked}"
    );
}

#[tokio::test]
async fn cdc_run_streams_changes_and_exits_zero_on_sigterm_with_the_position_confirmed() {
    let db = test_db().await;
    let slot = testkit::cdc::slot_name();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = tokio::process::Command::new(cargo_bin("cdc"))
        .args(["run", "--destination", "log"])
        .env("DATABASE_URL", db.url())
        .env("CDC_SLOT", &slot)
        .env("CDC_PUBLICATION", format!("{slot}_pub"))
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("CDC_STATUS_INTERVAL_MS", "100")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "cdc run ready", || async {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    })
    .await;
    sqlx::raw_sql(include_str!("../stack/demo.sql")).execute(&db.pool).await.expect("demo data");
    wait_until(Duration::from_secs(20), "the demo data streamed", || async {
        let body = testkit::metrics_text(&http, &format!("http://127.0.0.1:{port}/metrics")).await;
        body.contains("cdc_events_total{table=\"habit_usage\",op=\"insert\"}")
    })
    .await;
    let pid = child.id().expect("pid");
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits in time")
        .expect("output");
    assert!(out.status.success(), "exit status {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.contains("\"table\":\"users\"") && l.contains("demo@example.com")),
        "{stdout}"
    );
    let last_commit = stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "commit")
        .filter_map(|v| v["lsn"].as_str().map(str::to_owned))
        .next()
        .expect("a commit line");
    assert!(
        testkit::cdc::confirmed_past(&db.pool, &slot, &last_commit).await,
        "the last commit ({last_commit}) is confirmed on the way out"
    );
}
