//! High availability, measured with real processes: three `cdc run` on one slot at their
//! default timing (lock poll 250 ms, lock check 1 s, lease 3 s, write fence after an unclean
//! stop 5 s, flush window 250 ms), Airtable's real limits, a write load within them. The
//! leader is killed with kill -9 ten times at random moments, then stopped with SIGTERM three
//! times; each time the successor's steps are timed from the stop:
//! - leading (it holds the lock), streaming (its walsender has the slot), confirmed (it
//!   confirmed a position past the slot's at the stop), caught up (the slot is confirmed past
//!   everything committed before the stop);
//! - goals: streaming within 10 s (p95) after kill -9, leading within 2 s after SIGTERM;
//!   records lost or duplicated: 0, and no 429.
//!
//! `cargo bench -p benches --bench ha`

use benches::print_table;
use rand::Rng;
use std::{
    collections::HashMap,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};
use testkit::{
    airtable::{compare, mapping, BASE},
    ha::{percentiles, Daemons, Takeover},
};

const KILLS: usize = 10;
const TERMS: usize = 3;

/// The defaults, spelled out (the harness paces tests faster).
const DEFAULTS: &[(&str, &str)] = &[
    ("SYNC_LEADER_POLL_MS", "250"),
    ("SYNC_LEADER_CHECK_MS", "1000"),
    ("SYNC_LEADER_LEASE_MS", "3000"),
    ("SYNC_RECONCILE_DELAY_MS", "5000"),
    ("SYNC_FLUSH_MS", "250"),
];

fn s(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// One step of a takeover, read off it.
type Step = fn(&Takeover) -> Duration;

fn rows(stop: &str, takeovers: &[Takeover], goal: (&str, &str)) -> Vec<Vec<String>> {
    let steps: [(&str, Step); 4] = [
        ("leading", |t| t.leading),
        ("streaming", |t| t.streaming),
        ("confirmed", |t| t.confirmed),
        ("caught up", |t| t.caught_up),
    ];
    steps
        .iter()
        .map(|(name, f)| {
            let samples: Vec<Duration> = takeovers.iter().map(f).collect();
            let (p50, p95, max) = percentiles(&samples);
            let g = if *name == goal.0 { goal.1 } else { "-" };
            vec![
                stop.into(),
                takeovers.len().to_string(),
                (*name).into(),
                s(p50),
                s(p95),
                s(max),
                g.into(),
            ]
        })
        .collect()
}

/// (rows Airtable lacks, surplus records) of one table, by pg id.
async fn lost_and_duplicated(
    e: &airtable_emulator::Emulator,
    pool: &sqlx::PgPool,
) -> (usize, usize) {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM habit_usage").fetch_all(pool).await.expect("rows");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in e.admin().records(BASE, "Habit usage").expect("records") {
        if let Some(id) = r["fields"]["pg_id"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    let lost = ids.iter().filter(|id| !seen.contains_key(&id.to_string())).count();
    let duplicated = seen.values().map(|n| n - 1).sum();
    (lost, duplicated)
}

#[tokio::main]
async fn main() {
    let (_cluster, url, pool, e) = benches::demo_stack("ha_bench", "bench", None).await;
    // A slot of its own: the first leader creates it and copies what exists.
    let mut d = Daemons::new(&url, "ha_bench", DEFAULTS);
    for _ in 0..3 {
        d.spawn(&e);
    }
    d.wait_leader(&pool, 0).await;
    let m = mapping();
    testkit::cdc::until_ok(Duration::from_secs(180), "the first copy", || compare(&e, &pool, &m))
        .await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = testkit::ha::load(&pool, Duration::from_millis(100), stop.clone());
    let (mut kills, mut terms) = (Vec::new(), Vec::new());
    for round in 0..KILLS + TERMS {
        let pause = rand::rng().random_range(1000..4000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let term = round >= KILLS;
        let (stopped, status) = d.stop_leader(&pool, term).await;
        if let Some(status) = status {
            assert!(status.success(), "SIGTERM ends the leader with 0: {status}");
        }
        let t = d.takeover(&pool, &stopped).await;
        eprintln!("{} {round}: {t:?}", if term { "SIGTERM" } else { "kill -9" });
        if term {
            terms.push(t)
        } else {
            kills.push(t)
        }
        d.spawn(&e);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.expect("writer");
    let converged =
        testkit::cdc::until_ok_quiet(Duration::from_secs(180), || compare(&e, &pool, &m)).await;
    let (lost, duplicated) = lost_and_duplicated(&e, &pool).await;
    let stats = e.admin().stats();

    println!("\n### benches/ha: takeover after the leader stops ({written} rounds of writes, one every 100 ms)\n");
    let mut table = rows("kill -9", &kills, ("streaming", "p95 ≤ 10 s"));
    table.extend(rows("SIGTERM", &terms, ("leading", "≤ 2 s")));
    print_table(&["stop", "n", "step", "p50", "p95", "max", "goal"], &table);
    let (_, kill_p95, _) = percentiles(&kills.iter().map(|t| t.streaming).collect::<Vec<_>>());
    let (_, _, term_max) = percentiles(&terms.iter().map(|t| t.leading).collect::<Vec<_>>());
    println!();
    let yes = |ok: bool| if ok { "yes" } else { "no" }.to_string();
    print_table(
        &["measure", "result", "goal", "met"],
        &[
            vec![
                "streaming after kill -9, p95".into(),
                s(kill_p95),
                "≤ 10 s".into(),
                yes(kill_p95 <= Duration::from_secs(10)),
            ],
            vec![
                "leading after SIGTERM, max".into(),
                s(term_max),
                "≤ 2 s".into(),
                yes(term_max <= Duration::from_secs(2)),
            ],
            vec![
                "habit usage rows Airtable lacks".into(),
                lost.to_string(),
                "0".into(),
                yes(lost == 0),
            ],
            vec![
                "duplicated records".into(),
                duplicated.to_string(),
                "0".into(),
                yes(duplicated == 0),
            ],
            vec![
                "Airtable equals Postgres (every table)".into(),
                yes(converged.is_ok()),
                "yes".into(),
                yes(converged.is_ok()),
            ],
            vec![
                "429 responses (requests inside a penalty)".into(),
                format!("{} ({})", stats.rate_limited, stats.requests_during_penalty),
                "0".into(),
                yes(stats.rate_limited == 0),
            ],
        ],
    );
    if let Err(last) = converged {
        println!("\nlast difference: {last}");
    }
}
