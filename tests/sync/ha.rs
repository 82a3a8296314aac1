//! High availability with real processes: three `cdc run` on one slot, the leader killed
//! with kill -9 ten times under a write load; SIGTERM handover; a ping sent to a standby;
//! a leader cut off from its lock, which must send nothing once its successor leads; a
//! successor that waits out the 429 penalty its predecessor got.

use super::outbound::{converge, setup};
use airtable_emulator::{Emulator, RateLimits};
use rand::Rng;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};
use testkit::{
    airtable::{emulator, mapping, schema_for, BASE},
    cdc::wait_until,
    ha::{percentiles, Daemons},
    metrics_text, series, test_db, TestDb,
};

/// Test pacing on top of `cdc_run`'s (lock poll 100 ms, check 200 ms, lease 600 ms).
const ENV: &[(&str, &str)] = &[("SYNC_FLUSH_MS", "50"), ("SYNC_RECONCILE_DELAY_MS", "300")];

fn load(db: &TestDb, every: Duration, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    testkit::ha::load(&db.pool, every, stop)
}

/// `daemons` processes on a fresh slot (`extra` added to [`ENV`]), one leading.
async fn started(
    db: &TestDb,
    limits: RateLimits,
    daemons: usize,
    extra: &[(&str, &str)],
) -> (Emulator, Daemons) {
    let e = emulator(schema_for(&mapping(), |_| {}), limits).await;
    let (slot, _) = setup(db, &e).await;
    let env: Vec<_> = ENV.iter().chain(extra).copied().collect();
    let mut d = Daemons::new(&db.url(), &slot, &env);
    for _ in 0..daemons {
        d.spawn(&e);
    }
    d.wait_leader(&db.pool, 0).await;
    (e, d)
}

/// The leader (its index and epoch), once Airtable has a write of it.
async fn leader_writing(e: &Emulator, db: &TestDb, d: &Daemons) -> (usize, i64) {
    let (i, epoch) = d.wait_leader(&db.pool, 0).await;
    wait_until(Duration::from_secs(30), "the leader writes", || async {
        e.admin().request_log().iter().any(|r| r.epoch == Some(epoch) && r.records > 0)
    })
    .await;
    (i, epoch)
}

/// Exactly one process reports itself leader; the others are standbys naming it.
async fn one_leader(d: &Daemons, db: &TestDb) {
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "one leader, the rest standbys", || async {
        let Some((leader, _)) = d.leader(&db.pool).await else { return false };
        let mut ok = true;
        for i in 0..d.procs.len() {
            let (status, body) = d.readyz(&http, i).await;
            let text =
                metrics_text(&http, &format!("http://127.0.0.1:{}/metrics", d.procs[i].port)).await;
            let want = if i == leader { 1.0 } else { 0.0 };
            ok &= status == 200
                && body.contains(if i == leader { "ready (leader)" } else { "standby ready" })
                && series(&text, "cdc_leader") == want;
        }
        ok
    })
    .await;
}

#[tokio::test]
async fn three_daemons_the_leader_killed_ten_times_under_load_and_airtable_equals_postgres() {
    let db = test_db().await;
    let (e, mut d) = started(&db, RateLimits::off(), 3, &[]).await;
    one_leader(&d, &db).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(&db, Duration::from_millis(100), stop.clone());
    let mut times = Vec::new();
    for round in 0..10 {
        let pause = rand::rng().random_range(200..1500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let (stopped, _) = d.stop_leader(&db.pool, false).await;
        let took = d.takeover(&db.pool, &stopped).await;
        eprintln!(
            "round {round}: killed pid {} (epoch {}) {pause} ms in; the successor: {took:?}",
            stopped.pid, stopped.epoch
        );
        times.push(took.confirmed);
        d.spawn(&e);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.expect("writer");
    let (p50, p95, max) = percentiles(&times);
    eprintln!("{written} rounds of writes; first confirmation by the successor p50 {p50:?} p95 {p95:?} max {max:?}");
    converge(&e, &db, Duration::from_secs(120)).await;
    one_leader(&d, &db).await;
}

#[tokio::test]
async fn sigterm_hands_the_lead_over_cleanly_without_a_429() {
    let db = test_db().await;
    // Airtable's real limits: a successor sending while its predecessor still does would
    // show as 429s.
    let (e, mut d) =
        started(&db, RateLimits::default(), 2, &[("AIRTABLE_RATE_MARGIN_MS", "100")]).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Within Airtable's 5 requests a second, so the successor is not behind a backlog.
    let writer = load(&db, Duration::from_millis(250), stop.clone());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (stopped, status) = d.stop_leader(&db.pool, true).await;
    assert!(status.is_some_and(|s| s.success()), "SIGTERM ends the leader with 0: {status:?}");
    let took = d.takeover(&db.pool, &stopped).await;
    eprintln!("SIGTERM handover: the successor: {took:?}");
    let log = std::fs::read_to_string(&stopped.log).unwrap_or_default();
    assert!(log.contains("stepped down: the lock is free"), "a clean release:\n{log}");
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    converge(&e, &db, Duration::from_secs(120)).await;
    let stats = e.admin().stats();
    assert_eq!(stats.rate_limited, 0, "no 429: {:?}", stats.requests);
    assert_eq!(stats.requests_during_penalty, 0);
}

#[tokio::test]
async fn a_ping_sent_to_a_standby_reaches_the_leader_and_is_applied() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, _) = setup(&db, &e).await;
    // Nothing but a ping reads the users webhook: no payload timer, no users poll.
    let mut env = ENV.to_vec();
    env.extend([("SYNC_WEBHOOK_POLL_MS", "600000"), ("SYNC_POLL_USERS_MS", "600000")]);
    let mut d = Daemons::new(&db.url(), &slot, &env);
    d.spawn(&e);
    d.spawn(&e);
    let (leader, _) = d.wait_leader(&db.pool, 0).await;
    let standby = 1 - leader;
    let http = reqwest::Client::new();
    let metrics = |i: usize| {
        let url = format!("http://127.0.0.1:{}/metrics", d.procs[i].port);
        let http = http.clone();
        async move { metrics_text(&http, &url).await }
    };
    // The webhook watch has seen both hooks: its next look is SYNC_WEBHOOK_POLL_MS away.
    wait_until(Duration::from_secs(30), "healthy webhooks on the leader", || async {
        series(&metrics(leader).await, "inbound_webhooks_healthy") == 1.0
    })
    .await;

    let created = e
        .admin()
        .create_records(BASE, "Users", vec![serde_json::json!({ "Email": "standby@example.com", "Name": "Via standby", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    let record = created[0]["id"].as_str().expect("id").to_owned();
    let hook = testkit::inbound::hook_id(&db.pool, "users").await.expect("hook");
    let key = testkit::inbound::hook_key(&db.pool, "users").await;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let body =
        serde_json::json!({ "base": { "id": BASE }, "webhook": { "id": hook }, "timestamp": now })
            .to_string();
    let url = format!("http://127.0.0.1:{}/webhooks/airtable", d.procs[standby].port);
    let forged = airtable_emulator::mac_header(b"not the secret", body.as_bytes());
    let r = http.post(&url).header("X-Airtable-Content-MAC", forged).body(body.clone()).send();
    assert_eq!(r.await.expect("ping").status().as_u16(), 401, "the standby verifies the MAC");
    let good = airtable_emulator::mac_header(&key, body.as_bytes());
    let r = http.post(&url).header("X-Airtable-Content-MAC", good).body(body).send();
    assert_eq!(r.await.expect("ping").status().as_u16(), 200);

    wait_until(Duration::from_secs(20), "the user, through the standby's ping", || async {
        testkit::inbound::pg_id(&db.pool, "users", &record).await.is_some()
    })
    .await;
    let s = metrics(standby).await;
    assert_eq!(series(&s, "inbound_pings_forwarded_total{hook=\"users\"}"), 1.0, "{s}");
    let l = metrics(leader).await;
    assert_eq!(series(&l, "inbound_pings_from_standbys_total{hook=\"users\"}"), 1.0, "{l}");
    let log = e.admin().request_log();
    assert!(log.iter().any(|r| r.kind == "webhook_payloads"), "the leader read the payloads");
    // The standby sent nothing: every request, the schema read included, is the leader's.
    let (leaders, others): (Vec<_>, Vec<_>) = log.iter().partition(|r| r.epoch.is_some());
    assert!(others.is_empty(), "only the leader sends: {others:?}");
    assert_eq!(leaders.iter().filter(|r| r.kind == "meta").count(), 1, "one schema read");
    // A standby stops at once on SIGTERM (it holds nothing to hand over).
    let status = d.terminate(standby).await;
    assert!(status.success(), "SIGTERM ends a standby with 0: {status}");
}

#[tokio::test]
async fn a_leader_cut_from_its_lock_sends_nothing_once_its_successor_leads() {
    let db = test_db().await;
    let (e, mut d) = started(&db, RateLimits::off(), 2, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(&db, Duration::from_millis(100), stop.clone());
    let (old, old_epoch) = leader_writing(&e, &db, &d).await;
    // The partition: the server ends the lock's session; the old leader's other
    // connections (the stream, its pool) stay up.
    let ended: i32 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid))::int FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND objsubid = 2 AND classid = $1::int::oid AND objid = $2::int::oid
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(cdc::leadership::lock::NAMESPACE)
    .bind(cdc::leadership::lock::slot_key(d.slot()))
    .fetch_one(&db.pool)
    .await
    .expect("terminate");
    assert_eq!(ended, 1, "the lock's session was ended");
    let (_, new_epoch) = d.wait_leader(&db.pool, old_epoch).await;
    let mut deposed = d.procs.remove(old);
    let status = tokio::time::timeout(Duration::from_secs(30), deposed.child.wait())
        .await
        .expect("the deposed leader exits")
        .expect("wait");
    let err = deposed.log_text();
    assert!(!status.success() && err.contains("lost the lead"), "{status}: {err}");
    d.spawn(&e);
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    converge(&e, &db, Duration::from_secs(120)).await;

    let log = e.admin().request_log();
    let first_new =
        log.iter().position(|r| r.epoch == Some(new_epoch)).expect("the successor sent");
    let late: Vec<_> = log[first_new..].iter().filter(|r| r.epoch == Some(old_epoch)).collect();
    assert!(late.is_empty(), "requests under the old epoch after the successor started: {late:?}");
    assert!(log.iter().any(|r| r.epoch == Some(old_epoch)), "the old leader had sent");
}

#[tokio::test]
async fn a_successor_waits_out_the_429_penalty_its_predecessor_got() {
    let db = test_db().await;
    let limits = RateLimits { penalty: Duration::from_secs(4), ..RateLimits::default() };
    let (e, mut d) = started(&db, limits, 2, &[("AIRTABLE_PENALTY_MS", "4000")]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = load(&db, Duration::from_millis(100), stop.clone());
    leader_writing(&e, &db, &d).await;
    // Another client of the base breaks its limit: Airtable pauses the base, and the
    // leader's next request gets a 429.
    let http = reqwest::Client::new();
    for _ in 0..8 {
        let _ = http
            .get(format!("{}/v0/{BASE}/Users", e.url()))
            .bearer_auth(testkit::airtable::TOKEN)
            .send()
            .await;
    }
    wait_until(Duration::from_secs(30), "the leader hands its penalty on", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT coalesce(penalty_until > now(), false) FROM sync_leader WHERE slot_name = $1",
        )
        .bind(d.slot())
        .fetch_one(&db.pool)
        .await
        .unwrap_or(false)
    })
    .await;
    let (stopped, _) = d.stop_leader(&db.pool, false).await;
    let (_, new_epoch) = d.wait_leader(&db.pool, stopped.epoch).await;
    wait_until(Duration::from_secs(30), "the successor sends", || async {
        e.admin().request_log().iter().any(|r| r.epoch == Some(new_epoch))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    converge(&e, &db, Duration::from_secs(120)).await;
    let refused: Vec<_> = e
        .admin()
        .request_log()
        .into_iter()
        .filter(|r| r.epoch == Some(new_epoch) && r.status == 429)
        .collect();
    assert!(refused.is_empty(), "the successor sent inside the penalty: {refused:?}");
}
