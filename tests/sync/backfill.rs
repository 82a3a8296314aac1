//! Backfills end to end: rows that exist before the slot reach Airtable with no manual step,
//! exactly, under concurrent writes and kill -9; a column the mapping gains is filled in; a
//! slot lost for real is recovered; derived progress follows direct SQL.

use super::outbound::{converge, exec, DEMO};
use airtable_emulator::{Emulator, RateLimits};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use std::{collections::HashMap, process::Stdio, sync::Arc, time::Duration};
use testkit::{
    airtable::{
        airtable_config, emulator, mapping, mirror_reference_data, schema_for, start_sync, BASE,
    },
    cargo_bin,
    cdc::{free_port, slot_name, wait_until},
    test_db, TestDb,
};
use uuid::Uuid;

const USER: &str = "00000000-0000-4000-8000-000000000701";
const PROGRAM: &str = "00000000-0000-4000-8000-000000000801";
const METHOD: &str = "00000000-0000-4000-8000-000000000401";

/// Demo data plus `n` more usage rows, reference data mirrored in Airtable; no slot yet.
async fn existing_rows(db: &TestDb, e: &Emulator, n: usize) {
    exec(&db.pool, DEMO).await;
    exec(
        &db.pool,
        &format!(
            "INSERT INTO method_usage (user_id, method_id, program_id, used_on, remark)
         SELECT '{USER}', '{METHOD}', '{PROGRAM}', date '2000-01-01' + (g % 5000), 'r' || g
         FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    mirror_reference_data(e, BASE, &db.pool, &mapping()).await;
}

async fn open_jobs(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_backfill WHERE state IN ('pending', 'running')")
        .fetch_one(&db.pool)
        .await
        .expect("jobs")
}

async fn rows_done(db: &TestDb, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(max(rows_done), 0) FROM sync_backfill WHERE table_name = $1",
    )
    .bind(table)
    .fetch_one(&db.pool)
    .await
    .expect("rows_done")
}

/// Updates, deletes and inserts on random usage rows until `stop`; returns how many.
fn writer(
    pool: sqlx::PgPool,
    stop: Arc<tokio::sync::Notify>,
    seed: u64,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM method_usage ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("ids");
        let mut rng = StdRng::seed_from_u64(seed);
        let mut n = 0u64;
        loop {
            let id = ids[rng.random_range(0..ids.len())];
            let sql = match rng.random_range(0..10) {
                0..=5 => format!("UPDATE method_usage SET remark = 'w{n}' WHERE id = '{id}'"),
                6..=7 => format!("DELETE FROM method_usage WHERE id = '{id}'"),
                _ => format!("INSERT INTO method_usage (user_id, method_id, program_id, used_on, remark) VALUES ('{USER}', '{METHOD}', '{PROGRAM}', date '2001-01-01', 'new {n}')"),
            };
            sqlx::raw_sql(&sql).execute(&pool).await.expect("write");
            n += 1;
            tokio::select! {
                _ = stop.notified() => return n,
                _ = tokio::time::sleep(Duration::from_millis(2)) => {}
            }
        }
    })
}

/// Every program's derived fields in Airtable equal `program_progress` (computed by Postgres
/// from the rows, not by the daemon).
async fn progress_matches(e: &Emulator, db: &TestDb) -> Result<(), String> {
    let expected: Vec<(Uuid, i32, i32, f64)> = sqlx::query_as(
        "SELECT program_id, planned_sessions, completed_sessions, percent_complete FROM program_progress",
    )
    .fetch_all(&db.pool)
    .await
    .map_err(|e| e.to_string())?;
    let records = e.admin().records(BASE, "Programs").map_err(|e| format!("{e:?}"))?;
    let by_pg: HashMap<String, &Value> = records
        .iter()
        .map(|r| (r["fields"]["pg_id"].as_str().unwrap_or("").to_owned(), r))
        .collect();
    for (id, planned, completed, percent) in expected {
        let Some(r) = by_pg.get(&id.to_string()) else {
            return Err(format!("program {id} missing"));
        };
        let f = &r["fields"];
        let got = (
            f["Planned sessions"].as_f64(),
            f["Completed sessions"].as_f64(),
            f["Progress %"].as_f64(),
        );
        if got != (Some(planned as f64), Some(completed as f64), Some(percent)) {
            return Err(format!(
                "program {id}: Postgres {:?}, Airtable {got:?}",
                (planned, completed, percent)
            ));
        }
    }
    Ok(())
}

async fn progress_converges(e: &Emulator, db: &TestDb) {
    testkit::cdc::until_ok(Duration::from_secs(30), "progress converges", || {
        progress_matches(e, db)
    })
    .await;
}

#[tokio::test]
async fn rows_that_exist_before_the_first_start_are_backfilled_exactly_under_concurrent_writes() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    existing_rows(&db, &e, 20_000).await;
    // Written before any slot existed: never streamed, drained by the first start.
    exec(&db.pool, &format!("INSERT INTO sync_outbox (kind, table_name, pg_id) VALUES ('progress', 'programs', '{PROGRAM}')")).await;

    let slot = slot_name();
    let sync =
        start_sync(&db.url(), &slot, &format!("{slot}_pub"), airtable_config(&e), mapping()).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let writes = writer(db.pool.clone(), stop.clone(), 7);
    wait_until(Duration::from_secs(240), "the first start's backfills finish", || async {
        open_jobs(&db).await == 0
    })
    .await;
    stop.notify_one();
    let writes = writes.await.expect("writer");
    assert!(writes > 100, "the writer ran throughout ({writes} writes)");
    converge(&e, &db, Duration::from_secs(60)).await;
    progress_converges(&e, &db).await;

    let jobs: Vec<(String, String, String)> =
        sqlx::query_as("SELECT table_name, reason, state FROM sync_backfill ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("jobs");
    assert!(
        jobs.iter().any(|(t, r, s)| t == "method_usage" && r == "initial" && s == "done"),
        "{jobs:?}"
    );
    let stale: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_outbox WHERE kind = 'progress'")
        .fetch_one(&db.pool)
        .await
        .expect("outbox");
    assert_eq!(stale, 0, "progress intents from before the slot are drained");
    sync.stop().await;
}

/// `cdc run` as a process with no request budget, on `e`; stderr kept when `stderr`.
fn daemon(db: &TestDb, e: &Emulator, slot: &str, stderr: bool) -> tokio::process::Child {
    let port = free_port();
    let mut c = testkit::airtable::cdc_run(
        &cargo_bin("cdc"),
        &db.url(),
        slot,
        &format!("{slot}_pub"),
        port,
        e,
    );
    c.env("SYNC_FLUSH_MS", "50")
        .env("AIRTABLE_BASE_RPS", "0")
        .env("AIRTABLE_TOKEN_RPS", "0")
        .env("SYNC_RECONCILE_DELAY_MS", "300")
        .env("SYNC_BACKFILL_CHUNK", "500")
        .stdout(Stdio::null())
        .stderr(if stderr { Stdio::piped() } else { Stdio::null() });
    tokio::process::Command::from(c).kill_on_drop(true).spawn().expect("spawn cdc")
}

#[tokio::test]
async fn kill_9_twice_mid_backfill_resumes_where_it_was_and_ends_exact() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    existing_rows(&db, &e, 20_000).await;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM method_usage")
        .fetch_one(&db.pool)
        .await
        .expect("n");
    let slot = slot_name();
    e.admin().reset_stats();

    let mut child = daemon(&db, &e, &slot, false);
    for at in [3_000, 9_000] {
        wait_until(Duration::from_secs(120), "the backfill is under way", || async {
            rows_done(&db, "method_usage").await >= at
        })
        .await;
        child.start_kill().expect("kill -9");
        child.wait().await.expect("reaped");
        let saved = rows_done(&db, "method_usage").await;
        child = daemon(&db, &e, &slot, false);
        // It resumes at its saved key: what it had done is never counted (or sent) again.
        wait_until(Duration::from_secs(60), "the backfill moves on", || async {
            rows_done(&db, "method_usage").await > saved
        })
        .await;
    }
    wait_until(Duration::from_secs(240), "the backfills finish", || async {
        open_jobs(&db).await == 0
    })
    .await;
    converge(&e, &db, Duration::from_secs(60)).await;
    progress_converges(&e, &db).await;
    assert_eq!(
        rows_done(&db, "method_usage").await,
        total,
        "each row read once over three processes"
    );

    // At most the chunk in flight at each kill is sent twice (plus the program's progress).
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM method_usage) + (SELECT count(*) FROM program_schedule)
              + (SELECT count(*) FROM programs) + (SELECT count(*) FROM users) + (SELECT count(*) FROM habit_usage)",
    )
    .fetch_one(&db.pool)
    .await
    .expect("rows");
    let written = e.admin().stats().records_written as i64;
    assert!(written >= rows, "{written} records written for {rows} rows");
    assert!(
        written <= rows + 2 * 500 + 200,
        "{written} records written for {rows} rows: done chunks were sent again"
    );
    child.start_kill().ok();
}

/// The default mapping without personal_goals.description.
fn mapping_without_goal_description() -> Arc<schema::mapping::Mapping> {
    let text = schema::mapping::DEFAULT_MAPPING;
    let (head, tail) = text.split_at(text.find("[tables.personal_goals]").expect("goals"));
    let tail = tail.replacen(
        "fields.description = { field = \"Description\", type = \"multilineText\" }\n",
        "",
        1,
    );
    Arc::new(schema::mapping::Mapping::parse(&format!("{head}{tail}")).expect("mapping"))
}

#[tokio::test]
async fn a_column_added_by_alter_table_and_named_by_the_mapping_reaches_the_existing_rows() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    exec(&db.pool, DEMO).await;
    mirror_reference_data(&e, BASE, &db.pool, &mapping()).await;
    exec(&db.pool, &format!(
        "ALTER TABLE personal_goals DROP COLUMN description;
         INSERT INTO personal_goals (user_id, name) SELECT '{USER}', 'doel ' || g FROM generate_series(1, 300) g"
    ))
    .await;
    let slot = slot_name();
    let publication = format!("{slot}_pub");
    let before = mapping_without_goal_description();
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), before).await;
    wait_until(Duration::from_secs(60), "the first backfill", || async {
        open_jobs(&db).await == 0
    })
    .await;

    // Mid-run: the DBA adds the column and fills it; the running mapping does not name it.
    exec(
        &db.pool,
        "ALTER TABLE personal_goals ADD COLUMN description text;
                    UPDATE personal_goals SET description = 'over ' || name",
    )
    .await;
    sync.stop().await;
    // The deploy that names it: the mapping gained a column, so that column is backfilled.
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    wait_until(Duration::from_secs(60), "the column's backfill", || async {
        open_jobs(&db).await == 0
    })
    .await;
    converge(&e, &db, Duration::from_secs(30)).await;
    let job: (String, Option<Vec<String>>, String) = sqlx::query_as(
        "SELECT reason, columns, state FROM sync_backfill WHERE table_name = 'personal_goals' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .expect("job");
    assert_eq!(job, ("mapping".into(), Some(vec!["description".into()]), "done".into()));
    sync.stop().await;
}

#[tokio::test]
async fn progress_follows_direct_sql_writes_and_programs_created_alone() {
    let db = test_db().await;
    let (e, _slot, sync) = super::outbound::synced(&db).await;
    progress_converges(&e, &db).await;
    let (p2, p3) = (Uuid::new_v4(), Uuid::new_v4());
    // No outbox intents anywhere: plain SQL, as a DBA or an import would write.
    exec(&db.pool, &format!(
        "INSERT INTO method_usage (user_id, method_id, program_id, used_on)
         SELECT '{USER}', '{METHOD}', '{PROGRAM}', current_date - g FROM generate_series(10, 12) g;
         DELETE FROM method_usage WHERE id = (SELECT id FROM method_usage WHERE program_id = '{PROGRAM}' ORDER BY id LIMIT 1);
         UPDATE program_schedule SET method_ids = '{{{METHOD},00000000-0000-4000-8000-000000000402}}' WHERE program_id = '{PROGRAM}' AND date = current_date;
         INSERT INTO programs (id, user_id, name, start_date, end_date) VALUES
            ('{p2}', '{USER}', 'Tweede', current_date + 100, current_date + 130),
            ('{p3}', '{USER}', 'Alleen', current_date + 200, current_date + 230);
         INSERT INTO program_schedule (program_id, user_id, date, method_ids)
            VALUES ('{p2}', '{USER}', current_date + 101, '{{{METHOD}}}');
         UPDATE method_usage SET program_id = '{p2}' WHERE id = (SELECT id FROM method_usage WHERE program_id = '{PROGRAM}' ORDER BY id LIMIT 1);"
    ))
    .await;
    progress_converges(&e, &db).await;
    exec(&db.pool, &format!("DELETE FROM program_schedule WHERE program_id = '{p2}'; DELETE FROM programs WHERE id = '{p3}'")).await;
    progress_converges(&e, &db).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    sync.stop().await;
}

/// `cdc` as an operator runs it, against `db` and slot `slot`.
async fn cdc(db: &TestDb, slot: &str, args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(cargo_bin("cdc"))
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("CDC_SLOT", slot)
        .env("CDC_PUBLICATION", format!("{slot}_pub"))
        .env("RUST_LOG", "warn")
        .output();
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("in time").expect("cdc runs")
}

#[tokio::test]
async fn cdc_backfill_where_resends_what_airtable_lost_and_refuses_a_bad_condition() {
    let db = test_db().await;
    let (e, slot, sync) = super::outbound::synced(&db).await;
    // An admin deleted some records by hand: the next stream change would never bring them.
    let lost: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM habit_usage WHERE date >= current_date - 2")
            .fetch_all(&db.pool)
            .await
            .expect("ids");
    assert!(!lost.is_empty());
    for r in e.admin().records(BASE, "Habit usage").expect("records") {
        let pg: Uuid = r["fields"]["pg_id"].as_str().expect("pg_id").parse().expect("uuid");
        if lost.contains(&pg) {
            e.admin()
                .delete_record(BASE, "Habit usage", r["id"].as_str().expect("id"))
                .expect("delete");
        }
    }
    let bad = cdc(&db, &slot, &["backfill", "habit_usage", "--where", "no_such_column = 1"]).await;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("not a condition on habit_usage") && err.contains("no_such_column"),
        "{err}"
    );

    // Followed to the end: JSON progress lines without a terminal.
    let out =
        cdc(&db, &slot, &["backfill", "habit_usage", "--where", "date >= current_date - 2"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"state\":\"done\""), "{stdout}");
    converge(&e, &db, Duration::from_secs(30)).await;

    let status = cdc(&db, &slot, &["backfill", "status", "--json"]).await;
    let jobs: Value = serde_json::from_slice(&status.stdout).expect("json");
    let done = jobs
        .as_array()
        .expect("array")
        .iter()
        .find(|j| j["predicate"] == "date >= current_date - 2")
        .expect("the job");
    assert_eq!(
        (done["state"].as_str(), done["rows_done"].as_i64()),
        (Some("done"), Some(lost.len() as i64))
    );
    // resync is the same path, for one row.
    let out = cdc(&db, &slot, &["resync", "habit_usage", &lost[0].to_string()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    sync.stop().await;
}

async fn wal_status(db: &TestDb, slot: &str) -> Option<String> {
    sqlx::query_scalar("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1")
        .bind(slot)
        .fetch_optional(&db.pool)
        .await
        .expect("slot")
        .flatten()
}

#[tokio::test]
async fn a_slot_lost_for_real_is_recovered_with_one_command_and_ends_exact() {
    // A cluster of its own: a slot may hold back at most 1 MB of WAL.
    let options = testkit::ClusterOptions {
        settings: [
            ("max_slot_wal_keep_size", "1MB"),
            ("wal_keep_size", "0"),
            ("max_wal_size", "64MB"),
            ("min_wal_size", "32MB"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        ..Default::default()
    };
    let cluster: &'static testkit::Cluster =
        Box::leak(Box::new(testkit::Cluster::start(options).expect("cluster")));
    let db = testkit::migrated_db_on(cluster).await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    existing_rows(&db, &e, 2_000).await;
    let slot = slot_name();
    let publication = format!("{slot}_pub");
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    wait_until(Duration::from_secs(60), "the first backfill", || async {
        open_jobs(&db).await == 0
    })
    .await;
    converge(&e, &db, Duration::from_secs(30)).await;
    sync.stop().await;

    // While nothing streams: changes the slot will never deliver, then WAL past its limit.
    exec(&db.pool, &format!(
        "UPDATE method_usage SET remark = 'while lost' WHERE used_on < date '2000-03-01';
         DELETE FROM method_usage WHERE used_on > date '2012-06-01';
         INSERT INTO method_usage (user_id, method_id, program_id, used_on) VALUES ('{USER}', '{METHOD}', '{PROGRAM}', date '2002-02-02');
         CREATE TABLE wal_filler (v text);"
    ))
    .await;
    wait_until(Duration::from_secs(120), "the slot is lost", || async {
        exec(&db.pool, "INSERT INTO wal_filler SELECT repeat(md5(g::text), 32) FROM generate_series(1, 20000) g; TRUNCATE wal_filler").await;
        exec(&db.pool, "SELECT pg_switch_wal()").await;
        exec(&db.pool, "CHECKPOINT").await;
        wal_status(&db, &slot).await.as_deref() == Some("lost")
    })
    .await;

    // The daemon refuses a lost slot, naming the one command that fixes it.
    let run = daemon(&db, &e, &slot, true).wait_with_output().await.expect("cdc run");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && err.contains("cdc slot recover"), "{err}");
    let out = cdc(&db, &slot, &["slot", "recover"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(wal_status(&db, &slot).await.as_deref(), Some("reserved"));

    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    wait_until(Duration::from_secs(120), "the recovery backfills", || async {
        open_jobs(&db).await == 0
    })
    .await;
    // Exactly equal: what changed while lost is there, what was deleted is gone, no duplicates.
    converge(&e, &db, Duration::from_secs(30)).await;
    progress_converges(&e, &db).await;
    sync.stop().await;
}
