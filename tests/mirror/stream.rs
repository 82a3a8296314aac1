//! The mirror's daemon in process, on the emulator: every mirrored table's inserts, updates
//! and deletes; rows from before the slot copied parents first; a poison row dead-lettered
//! while the rest flows; a refused deploy key stops the lead naming the variable.

use std::time::Duration;
use testkit::{
    cdc::{slot_name, until_ok, wait_until},
    convex::{compare, convex_config, emulator, mirror, start_mirror},
    test_db,
};

const DEMO: &str = include_str!("../stack/demo.sql");
const USER: &str = "00000000-0000-4000-8000-000000000701";
const PROGRAM: &str = "00000000-0000-4000-8000-000000000801";

/// Rows in the tables demo.sql leaves empty.
const MORE: &str = "
INSERT INTO personal_goals (id, user_id, name, scheduled_day_ids) VALUES
  ('00000000-0000-4000-8000-000000000901', '00000000-0000-4000-8000-000000000701', 'Elke dag lezen', '{00000000-0000-4000-8000-000000000101}');
INSERT INTO personal_goal_usage (user_id, personal_goal_id, date) VALUES
  ('00000000-0000-4000-8000-000000000701', '00000000-0000-4000-8000-000000000901', DATE '2026-01-05');
INSERT INTO overtuiging_usage (user_id, overtuiging_id, program_id, date) VALUES
  ('00000000-0000-4000-8000-000000000701', '00000000-0000-4000-8000-000000000501', '00000000-0000-4000-8000-000000000801', DATE '2026-01-05');
INSERT INTO persoonlijke_overtuigingen (user_id, program_id, name, completed_at) VALUES
  ('00000000-0000-4000-8000-000000000701', '00000000-0000-4000-8000-000000000801', 'Ik kan dit', now());
";

async fn exec(pool: &sqlx::PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn converge(e: &convex_emulator::Emulator, pool: &sqlx::PgPool, what: &str) {
    let m = mirror();
    until_ok(Duration::from_secs(60), what, || compare(e, pool, &m)).await;
}

#[tokio::test]
async fn every_mirrored_table_inserts_updates_and_deletes_reach_convex_exactly() {
    let db = test_db().await;
    let e = emulator(&mirror(), false).await;
    let slot = slot_name();
    let m = start_mirror(&db.url(), &slot, convex_config(&e), mirror()).await;
    exec(&db.pool, DEMO).await;
    exec(&db.pool, MORE).await;
    for t in &mirror().tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", t.table.name))
            .fetch_one(&db.pool)
            .await
            .expect("count");
        assert!(n > 0, "the test writes every mirrored table: {} is empty", t.table.name);
    }
    converge(&e, &db.pool, "inserts of every table").await;

    // One update of every table, a TOASTed value left unchanged by a later update (the
    // stream does not carry it: the daemon reads it), and Airtable-owned columns too (the
    // mirror carries what the inbound side applies).
    let big: String = (0..2000).map(|i| format!("{:x}", md5_like(i))).collect();
    exec(&db.pool, &format!("
        UPDATE companies SET name = name || ' (nieuw)';
        UPDATE goals SET sort_order = sort_order + 10;
        UPDATE mindset_categories SET description = 'bijgewerkt';
        UPDATE days_of_week SET name = upper(name);
        UPDATE methods SET duration_minutes = duration_minutes + 1, goal_ids = '{{}}';
        UPDATE overtuigingen SET level = 2;
        UPDATE prompts SET body = body || '!';
        UPDATE users SET bonus_points = 42, badges = '{{early,streak}}', last_login_at = now();
        UPDATE programs SET motivation = 'Meer rust';
        UPDATE program_schedule SET notes = '{big}' WHERE date = (SELECT min(date) FROM program_schedule);
        UPDATE method_usage SET remark = 'goed gedaan';
        UPDATE habit_usage SET date = date - 100;
        UPDATE personal_goals SET description = 'Tien minuten', coach_feedback = 'Mooi doel';
        UPDATE personal_goal_usage SET date = date + 1;
        UPDATE overtuiging_usage SET date = date + 1;
        UPDATE persoonlijke_overtuigingen SET completed_at = NULL;
    ")).await;
    converge(&e, &db.pool, "updates of every table").await;
    exec(&db.pool, "UPDATE program_schedule SET method_ids = '{}' WHERE notes IS NOT NULL").await;
    converge(&e, &db.pool, "an update that leaves a TOASTed value unchanged").await;

    // Deletes, children first where foreign keys ask it; cascades stream as deletes too.
    exec(
        &db.pool,
        &format!(
            "
        DELETE FROM habit_usage;
        DELETE FROM persoonlijke_overtuigingen;
        DELETE FROM programs WHERE id = '{PROGRAM}';
        DELETE FROM personal_goals;
        DELETE FROM prompts WHERE key = 'welcome';
        DELETE FROM users WHERE id = '{USER}';
        DELETE FROM overtuigingen;
        DELETE FROM methods;
        DELETE FROM goals;
        DELETE FROM mindset_categories;
        DELETE FROM days_of_week;
        DELETE FROM companies;
    "
        ),
    )
    .await;
    converge(&e, &db.pool, "deletes of every table").await;
    let tombstones: usize = mirror()
        .tables
        .iter()
        .map(|t| {
            e.admin().table(&t.convex).unwrap_or_default().iter().filter(|d| d.deleted).count()
        })
        .sum();
    assert!(tombstones > 40, "deleted rows stay as tombstones: {tombstones}");
    m.stop().await;
}

/// A stable, incompressible-looking text so the value is stored out of line (TOAST).
fn md5_like(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0xA5A5_5A5A_1234_5678
}

#[tokio::test]
async fn rows_from_before_the_slot_are_copied_parents_first() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    exec(&db.pool, MORE).await;
    let e = emulator(&mirror(), true).await;
    let m = start_mirror(&db.url(), &slot_name(), convex_config(&e), mirror()).await;
    converge(&e, &db.pool, "the initial copy").await;
    // The first document of each table lands after every table before it in the mirror.
    let order: Vec<String> = mirror().tables.iter().map(|t| t.convex.clone()).collect();
    let mut first_seen: Vec<String> = Vec::new();
    for a in e.admin().history() {
        if !first_seen.contains(&a.table) {
            first_seen.push(a.table.clone());
        }
    }
    assert_eq!(first_seen, order, "tables copied in the mirror's order");
    let jobs: Vec<(String, String)> =
        sqlx::query_as("SELECT destination, state FROM sync_backfill")
            .fetch_all(&db.pool)
            .await
            .expect("jobs");
    assert_eq!(jobs.len(), order.len());
    assert!(jobs.iter().all(|(d, s)| d == "convex" && s == "done"), "{jobs:?}");
    m.stop().await;
}

#[tokio::test]
async fn a_document_convex_refuses_is_one_dead_letter_and_the_rest_flows() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let e = emulator(&mirror(), false).await;
    let m = start_mirror(&db.url(), &slot_name(), convex_config(&e), mirror()).await;
    converge(&e, &db.pool, "the initial copy").await;
    // Past the API's limits, written by hand: a note of 1.1 MB, over Convex's 1 MiB.
    exec(&db.pool, &format!("
        UPDATE program_schedule SET notes = repeat('x', 1100000) WHERE date = (SELECT min(date) FROM program_schedule);
        INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '00000000-0000-4000-8000-000000000403', DATE '2030-01-01');
        UPDATE programs SET motivation = 'na de gifpil';
    ")).await;
    let poisoned: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM program_schedule WHERE notes IS NOT NULL")
            .fetch_one(&db.pool)
            .await
            .expect("row");
    wait_until(Duration::from_secs(60), "the rest reached Convex", || async {
        e.admin()
            .table("habit_usage")
            .unwrap_or_default()
            .iter()
            .any(|d| d.doc["date"] == "2030-01-01")
            && e.admin()
                .table("programs")
                .unwrap_or_default()
                .iter()
                .any(|d| d.doc["motivation"] == "na de gifpil")
    })
    .await;
    let letters: Vec<(String, String, String, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT destination, error_code, table_name, pg_id FROM sync_dead_letter WHERE status = 'pending'",
    )
    .fetch_all(&db.pool)
    .await
    .expect("dead letters");
    assert_eq!(
        letters,
        vec![(
            "convex".into(),
            "DOCUMENT_TOO_LARGE".into(),
            "program_schedule".into(),
            Some(poisoned)
        )]
    );
    // `cdc dlq replay` before the fix: refused again, the same dead letter, one more attempt.
    let (ok, out, err) =
        testkit::cdc_output(&["dlq", "replay", "--all"], &[("DATABASE_URL", &db.url())]).await;
    assert!(ok, "{out}{err}");
    wait_until(Duration::from_secs(30), "the replay refused again", || async {
        let attempts: Option<i32> = sqlx::query_scalar(
            "SELECT attempts FROM sync_dead_letter WHERE status = 'pending' AND destination = 'convex'",
        )
        .fetch_optional(&db.pool)
        .await
        .ok()
        .flatten();
        attempts == Some(2)
    })
    .await;
    // Fixed in Postgres: the next write of the row lands and resolves its dead letter.
    exec(&db.pool, "UPDATE program_schedule SET notes = 'kort' WHERE notes IS NOT NULL").await;
    converge(&e, &db.pool, "the fixed row").await;
    wait_until(Duration::from_secs(30), "the dead letter resolved", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sync_dead_letter WHERE status = 'pending'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap_or(1)
            == 0
    })
    .await;
    m.stop().await;
}

#[tokio::test]
async fn a_deploy_key_convex_refuses_stops_the_lead_naming_the_variable() {
    let db = test_db().await;
    let e = emulator(&mirror(), false).await;
    let mut config = convex_config(&e);
    config.deploy_key = "wrong".to_owned().into();
    let pool = sqlx::PgPool::connect(&db.url()).await.expect("pool");
    let client = std::sync::Arc::new(cdc::convex::ConvexClient::new(config).expect("client"));
    let destination = cdc::destination::convex::ConvexDestination::new(client, mirror(), pool);
    let slot = slot_name();
    let config = testkit::cdc::daemon_config(&db.url(), &slot, &format!("{slot}_pub"));
    let daemon = cdc::run::Daemon::build(&config, mirror().as_ref(), destination, None)
        .await
        .expect("builds");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let err = tokio::time::timeout(Duration::from_secs(30), daemon.run_until(rx))
        .await
        .expect("stops in time")
        .err()
        .expect("refused");
    let message = err.to_string();
    assert!(message.contains("CONVEX_DEPLOY_KEY"), "{message}");
    assert_eq!(e.admin().stats().unauthorized, 1);
}
