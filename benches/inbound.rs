//! The inbound side, measured: how long after an admin creates a user in Airtable the user is
//! in Postgres (so the login flow finds them), under Airtable's default limits (5 requests/s
//! per base, one budget shared by both directions, the users fast lane first):
//! - via webhook, while an outbound backlog drains (goal p95 ≤ 2 s, p99 ≤ 5 s);
//! - with webhooks off, by the users poll alone (goal: within the poll interval + 2 s);
//! - the outbound drain with no user events (goal ≥ 47.5 records/s) and while users arrive at
//!   one a second (goal ≥ 35 records/s), and Airtable requests per created user (goal ≤ 1.2).
//!
//! `cargo bench -p benches --bench inbound`

use airtable_emulator::Emulator;
use benches::{percentile, print_table};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use testkit::{
    airtable::{airtable_config, mapping, start_sync_sharing, BASE},
    inbound::start_inbound_sharing,
};

const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const USERS: usize = 60;
const POLLED_USERS: usize = 10;
const USERS_POLL: Duration = Duration::from_secs(5);

/// A user created in Airtable as an admin would: how long until Postgres has it.
async fn provision(e: &Emulator, pool: &sqlx::PgPool, n: usize, tag: &str) -> Duration {
    benches::provision_user(e, pool, &format!("{tag}{n}@example.com"), tag).await
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

/// Whether a logged request's table is `name` (the client names tables by name or by id).
fn table_named(e: &Emulator, name: &'static str) -> impl Fn(&Option<String>) -> bool {
    let id = e.admin().table_id(BASE, name);
    move |t| t.as_deref().is_some_and(|t| t == name || Some(t) == id.as_deref())
}

/// Requests by kind and table, for the breakdowns printed beside the table.
fn kinds(log: &[airtable_emulator::LoggedRequest]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in log {
        *out.entry(format!("{} {}", r.kind, r.table.as_deref().unwrap_or("-"))).or_default() += 1;
    }
    out
}

#[tokio::main]
async fn main() {
    let (_cluster, url, pool, e) = benches::demo_stack("inbound_bench", "bench", None).await;

    // Airtable's real limits, one budget for both directions, the daemon's default margin.
    let mut at = airtable_config(&e);
    at.base_rps = 5;
    at.token_rps = 50;
    let budget = Arc::new(at.budget());

    // An outbound backlog that takes minutes to drain at 5 requests/s.
    sqlx::query(&format!("INSERT INTO habit_usage (user_id, method_id, date) SELECT '{USER}', '{HABIT}', DATE '2040-01-01' + g FROM generate_series(0, 19999) g"))
        .execute(&pool)
        .await
        .expect("backlog");
    let sync =
        start_sync_sharing(&url, "bench_slot", "bench_pub", at.clone(), mapping(), budget.clone())
            .await;
    let inbound = start_inbound_sharing(&url, at.clone(), budget.clone(), |c| {
        // The production defaults.
        c.base_webhook_gap = Duration::from_secs(5);
        c.webhook_poll = Duration::from_secs(60);
        c.users_poll = Duration::from_secs(60);
        c.poll = Duration::from_secs(120);
        c.stamp_delay = Duration::from_secs(10);
    })
    .await;
    // Measure once the backlog is flowing and the backfill is done.
    let started = Instant::now();
    loop {
        let synced = e.admin().records(BASE, "Habit usage").map(|r| r.len()).unwrap_or(0);
        let polled: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_checkpoint WHERE name LIKE 'inbound.poll.%'",
        )
        .fetch_one(&pool)
        .await
        .expect("checkpoints");
        if synced >= 50 && polled >= 9 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "the backlog never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Control: the outbound drain with the inbound side running but no user events.
    let synced =
        |e: &Emulator| e.admin().records(BASE, "Habit usage").map(|r| r.len()).unwrap_or(0);
    let quiet_from = synced(&e);
    let quiet_log = e.admin().request_log().last().map_or(0, |r| r.at_ms);
    let quiet = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let counted_rate = (synced(&e) - quiet_from) as f64 / quiet.elapsed().as_secs_f64();
    // Where the quiet phase's requests went: the drain's writes, and everything else.
    let quiet_log: Vec<_> =
        e.admin().request_log().into_iter().filter(|r| r.at_ms > quiet_log).collect();
    // The rate as the emulator saw the writes, first to last: counting records means
    // cloning the whole table under the emulator's lock, which stalls its requests at both
    // ends of the window by as long as the clone takes.
    let drain_table = table_named(&e, "Habit usage");
    let writes: Vec<_> = quiet_log
        .iter()
        .filter(|r| r.kind == "update" && r.status == 200 && r.records > 0)
        .filter(|r| drain_table(&r.table))
        .collect();
    let quiet_rate = match (writes.first(), writes.last()) {
        (Some(a), Some(b)) if b.at_ms > a.at_ms => {
            writes[1..].iter().map(|r| r.records).sum::<usize>() as f64
                / ((b.at_ms - a.at_ms) as f64 / 1000.0)
        }
        _ => counted_rate,
    };
    eprintln!("quiet phase: {quiet_rate:.2} records/s as the emulator saw the writes, {counted_rate:.2} counted around its lock");
    eprintln!("quiet phase requests (kind: requests): {:?}", kinds(&quiet_log));
    // How the window was used: the time from each request to the fifth after it, as the
    // emulator saw them (the window is the floor; anything above it is budget left unused).
    let mut spans: Vec<u64> = quiet_log.windows(6).map(|w| w[5].at_ms - w[0].at_ms).collect();
    spans.sort_unstable();
    if !spans.is_empty() {
        eprintln!(
            "quiet phase: request to the fifth after it, ms: min {} median {} p90 {} max {}",
            spans[0],
            spans[spans.len() / 2],
            spans[spans.len() * 9 / 10],
            spans[spans.len() - 1]
        );
    }
    let before = synced(&e);
    let log_from = e.admin().request_log().last().map_or(0, |r| r.at_ms);
    let t0 = Instant::now();
    let mut webhook = Vec::new();
    for n in 0..USERS {
        webhook.push(provision(&e, &pool, n, "hook").await);
        // An admin creating users one after another, about one a second.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let drained = e.admin().records(BASE, "Habit usage").map(|r| r.len()).unwrap_or(0) - before;
    let outbound_rate = drained as f64 / t0.elapsed().as_secs_f64();
    let stats = e.admin().stats();
    // The last stamps wait for company up to SYNC_STAMP_DELAY_MS: count them in.
    let stamped = Instant::now();
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_pending_stamps")
        .fetch_one(&pool)
        .await
        .expect("stamps")
        > 0
    {
        assert!(stamped.elapsed() < Duration::from_secs(120), "stamps never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every request of the phase but the outbound drain's is the users' cost (the quiet
    // phase shows the inbound side costs next to nothing without them).
    let users_log: Vec<_> = e
        .admin()
        .request_log()
        .into_iter()
        .filter(|r| r.at_ms > log_from && !drain_table(&r.table))
        .collect();
    let per_user_all = users_log.len() as f64 / USERS as f64;
    // What user events cost: the users webhook's payload reads and every request on the
    // Users table (re-reads, stamps, its poll); the base webhook's reads of outbound echoes
    // and the webhook watch run with or without users.
    let users_hook: Option<String> = sqlx::query_scalar(
        "SELECT value->>'id' FROM sync_checkpoint WHERE name = 'inbound.webhook.users'",
    )
    .fetch_optional(&pool)
    .await
    .expect("hook")
    .flatten();
    let users_table = table_named(&e, "Users");
    let per_user = users_log
        .iter()
        .filter(|r| (r.hook.is_some() && r.hook == users_hook) || users_table(&r.table))
        .count() as f64
        / USERS as f64;
    eprintln!(
        "requests while users arrive, besides the drain (kind: requests): {:?}",
        kinds(&users_log)
    );
    inbound.stop().await;
    // Stopping cleanly would first drain the backlog's pending rows; this phase is over.
    sync.crash().await;

    // Webhooks off: the users poll alone, users created at random moments of its cycle.
    let polled = start_inbound_sharing(&url, at.clone(), budget.clone(), |c| {
        c.webhooks = false;
        c.users_poll = USERS_POLL;
        c.poll = Duration::from_secs(600);
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut polling = Vec::new();
    for n in 0..POLLED_USERS {
        polling.push(provision(&e, &pool, n, "poll").await);
        tokio::time::sleep(Duration::from_millis(700 * (n as u64 % 5))).await;
    }
    polled.stop().await;

    let mut w = webhook.clone();
    let mut p = polling.clone();
    let (w50, w95, w99, wmax) = (
        percentile(&mut w, 50.0),
        percentile(&mut w, 95.0),
        percentile(&mut w, 99.0),
        percentile(&mut w, 100.0),
    );
    let (p50, pmax) = (percentile(&mut p, 50.0), percentile(&mut p, 100.0));
    print_table(
        &["path", "users", "p50 ms", "p95 ms", "p99 ms", "max ms", "goal", "met"],
        &[
            vec![
                "webhook, outbound backlog draining".to_owned(),
                USERS.to_string(),
                ms(w50),
                ms(w95),
                ms(w99),
                ms(wmax),
                "p95 ≤ 2000, p99 ≤ 5000".into(),
                if w95 <= Duration::from_secs(2) && w99 <= Duration::from_secs(5) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ],
            vec![
                format!("users poll only (every {} s)", USERS_POLL.as_secs()),
                POLLED_USERS.to_string(),
                ms(p50),
                "-".into(),
                "-".into(),
                ms(pmax),
                format!("max ≤ {}", ms(USERS_POLL + Duration::from_secs(2))),
                if pmax <= USERS_POLL + Duration::from_secs(2) { "yes" } else { "no" }.into(),
            ],
        ],
    );
    let yes = |met: bool| if met { "yes" } else { "no" }.to_owned();
    println!();
    print_table(
        &["measure", "result", "goal", "met"],
        &[
            vec![
                "outbound drain, no user events, inbound side at its defaults".into(),
                format!("{quiet_rate:.2} records/s"),
                "≥ 47.5 records/s".into(),
                yes(quiet_rate >= 47.5),
            ],
            vec![
                "outbound drain while users arrive at one a second".into(),
                format!("{outbound_rate:.2} records/s"),
                "≥ 35 records/s".into(),
                yes(outbound_rate >= 35.0),
            ],
            vec![
                "Airtable requests per Airtable-created user (users webhook, Users table)".into(),
                format!("{per_user:.2}"),
                "≤ 1.2".into(),
                yes(per_user <= 1.2),
            ],
            vec![
                "every request but the drain's while users arrive, per user".into(),
                format!("{per_user_all:.2}"),
                "-".into(),
                "-".into(),
            ],
            vec![
                "429 responses (requests inside a penalty)".into(),
                format!("{} ({})", stats.rate_limited, stats.requests_during_penalty),
                "0".into(),
                yes(stats.rate_limited == 0),
            ],
        ],
    );
}
