use airtable_emulator::{Faults, RateLimits};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Duration;
use testkit::{
    airtable::{
        airtable_config, compare, emulator, mapping, mirror_reference_data, schema_for, start_sync,
        BASE,
    },
    cdc::{prepare, slot_name, wait_until},
    test_db, TestDb,
};

pub(super) const DEMO: &str = include_str!("../stack/demo.sql");
const USER: &str = "00000000-0000-4000-8000-000000000701";
const PROGRAM: &str = "00000000-0000-4000-8000-000000000801";
const METHOD: &str = "00000000-0000-4000-8000-000000000401";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";

pub(super) async fn exec(pool: &sqlx::PgPool, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sql).execute(pool).await {
        panic!("{sql}: {e}");
    }
}

/// Demo data in Postgres, reference data mirrored in Airtable, a slot and publication.
pub(super) async fn setup(db: &TestDb, e: &airtable_emulator::Emulator) -> (String, String) {
    exec(&db.pool, DEMO).await;
    mirror_reference_data(e, BASE, &db.pool, &mapping()).await;
    let slot = slot_name();
    let publication = format!("{slot}_pub");
    let tables: Vec<String> = mapping().published_tables().into_iter().map(|(_, t)| t).collect();
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    prepare(&db.url(), &publication, &tables, &slot).await;
    // Rows that existed before the slot: send their current state.
    for t in ["users", "programs", "program_schedule", "method_usage", "habit_usage"] {
        exec(
            &db.pool,
            &format!("INSERT INTO sync_outbox (kind, table_name) VALUES ('resync', '{t}')"),
        )
        .await;
    }
    (slot, publication)
}

/// A test database synced into a fresh emulator (converged before the test's own changes).
pub(super) async fn synced(
    db: &TestDb,
) -> (airtable_emulator::Emulator, String, testkit::airtable::Syncing) {
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, publication) = setup(db, &e).await;
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    converge(&e, db, Duration::from_secs(30)).await;
    (e, slot, sync)
}

pub(super) async fn converge(e: &airtable_emulator::Emulator, db: &TestDb, limit: Duration) {
    let m = mapping();
    testkit::cdc::until_ok(limit, "Airtable converges to Postgres", || compare(e, &db.pool, &m))
        .await;
}

#[tokio::test]
async fn every_op_on_every_mapped_table_lands_with_its_fields_and_links() {
    let db = test_db().await;
    let (e, _slot, sync) = synced(&db).await;

    exec(&db.pool, "INSERT INTO users (id, email, name) VALUES ('10000000-0000-4000-8000-0000000000ff', 'tweede@example.com', 'Tweede')").await;
    exec(&db.pool, &format!(
        "INSERT INTO personal_goals (id, user_id, name, scheduled_day_ids) VALUES ('20000000-0000-4000-8000-000000000001', '{USER}', 'Lezen', '{{00000000-0000-4000-8000-000000000101}}');
         INSERT INTO personal_goal_usage (user_id, personal_goal_id, date) VALUES ('{USER}', '20000000-0000-4000-8000-000000000001', '2030-01-01');
         INSERT INTO overtuiging_usage (user_id, overtuiging_id, program_id, date) VALUES ('{USER}', '00000000-0000-4000-8000-000000000501', '{PROGRAM}', current_date);
         INSERT INTO persoonlijke_overtuigingen (user_id, program_id, name, completed_at) VALUES ('{USER}', '{PROGRAM}', 'Ik kan dit', now());
         INSERT INTO method_usage (user_id, method_id, program_id, used_on, remark) VALUES ('{USER}', '{METHOD}', '{PROGRAM}', current_date, 'goed');
         UPDATE users SET bonus_points = 40, badges = '{{starter,streak}}', level = 2, last_login_at = now() WHERE id = '{USER}';
         UPDATE programs SET name = 'Nieuwe naam', method_ids = '{{{METHOD}}}' WHERE id = '{PROGRAM}';
         UPDATE habit_usage SET date = date - 100 WHERE id = (SELECT id FROM habit_usage ORDER BY date LIMIT 1);
         DELETE FROM habit_usage WHERE id = (SELECT id FROM habit_usage ORDER BY date DESC LIMIT 1);
         DELETE FROM program_schedule WHERE id = (SELECT id FROM program_schedule ORDER BY date DESC LIMIT 1);"
    )).await;
    converge(&e, &db, Duration::from_secs(30)).await;

    // An update of a Postgres-owned column in every outbound table, then a delete from each.
    exec(&db.pool, &format!(
        "UPDATE users SET level = 3 WHERE id = '{USER}';
         UPDATE programs SET end_date = end_date + 1 WHERE id = '{PROGRAM}';
         UPDATE program_schedule SET notes = 'bijgewerkt' WHERE id = (SELECT id FROM program_schedule ORDER BY date LIMIT 1);
         UPDATE method_usage SET remark = 'nog beter' WHERE remark = 'goed';
         UPDATE habit_usage SET date = date - 1 WHERE id = (SELECT id FROM habit_usage ORDER BY date LIMIT 1);
         UPDATE personal_goals SET description = 'elke dag' WHERE id = '20000000-0000-4000-8000-000000000001';
         UPDATE personal_goal_usage SET date = '2030-01-02' WHERE personal_goal_id = '20000000-0000-4000-8000-000000000001';
         UPDATE overtuiging_usage SET date = current_date - 1 WHERE user_id = '{USER}';
         UPDATE persoonlijke_overtuigingen SET name = 'Ik kan dit echt' WHERE user_id = '{USER}';"
    )).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    exec(&db.pool,
        "DELETE FROM method_usage WHERE remark = 'nog beter';
         DELETE FROM personal_goal_usage WHERE personal_goal_id = '20000000-0000-4000-8000-000000000001';
         DELETE FROM personal_goals WHERE id = '20000000-0000-4000-8000-000000000001';
         DELETE FROM overtuiging_usage;
         DELETE FROM persoonlijke_overtuigingen;
         DELETE FROM users WHERE id = '10000000-0000-4000-8000-0000000000ff';"
    ).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    for table in
        ["Personal goal usage", "Personal goals", "Overtuiging usage", "Persoonlijke overtuigingen"]
    {
        assert!(e.admin().records(BASE, table).expect("records").is_empty(), "{table} emptied");
    }

    // A large TOASTed value, then an update that leaves it alone: Airtable keeps the value.
    exec(&db.pool, &format!("UPDATE programs SET motivation = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g) WHERE id = '{PROGRAM}'")).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    exec(&db.pool, &format!("UPDATE programs SET name = 'Alleen de naam' WHERE id = '{PROGRAM}'"))
        .await;
    converge(&e, &db, Duration::from_secs(30)).await;
    let programs = e.admin().records(BASE, "Programs").expect("programs");
    let p = programs.iter().find(|r| r["fields"]["pg_id"] == PROGRAM).expect("program");
    assert_eq!(p["fields"]["Name"], "Alleen de naam");
    assert_eq!(
        p["fields"]["Motivation"].as_str().map(str::len),
        Some(12_800),
        "the TOASTed value survives the update"
    );
    assert!(p["fields"]["User"].as_array().is_some_and(|a| a.len() == 1), "linked to its user");

    // Deletes remove records (and cascades follow).
    exec(&db.pool, &format!("DELETE FROM programs WHERE id = '{PROGRAM}'")).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    assert!(e.admin().records(BASE, "Programs").expect("p").is_empty());
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter")
        .fetch_one(&db.pool)
        .await
        .expect("dlq");
    assert_eq!(dead, 0);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_outbox")
        .fetch_one(&db.pool)
        .await
        .expect("outbox");
    assert_eq!(outbox, 0, "delivered outbox rows are purged");
    sync.stop().await;
}

#[tokio::test]
async fn an_insert_deleted_before_the_flush_writes_nothing() {
    let db = test_db().await;
    let (e, _slot, sync) = synced(&db).await;
    e.admin().reset_stats();
    exec(&db.pool, &format!("BEGIN; INSERT INTO habit_usage (id, user_id, method_id, date) VALUES ('30000000-0000-4000-8000-000000000001', '{USER}', '{HABIT}', '2031-05-05'); DELETE FROM habit_usage WHERE id = '30000000-0000-4000-8000-000000000001'; COMMIT;")).await;
    exec(&db.pool, &format!("UPDATE users SET bonus_points = 7 WHERE id = '{USER}'")).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    let stats = e.admin().stats();
    assert_eq!(stats.count("delete"), 0, "{:?}", stats.requests);
    assert_eq!(stats.records_written, 1, "only the user's update: {:?}", stats.requests);
    sync.stop().await;
}

#[tokio::test]
async fn a_refused_row_is_dead_lettered_the_rest_syncs_and_replay_fixes_it() {
    let db = test_db().await;
    // Airtable refuses Planning notes other than "ok" (a select without typecast).
    let schema = schema_for(&mapping(), |s| {
        for t in s["bases"][0]["tables"].as_array_mut().expect("tables") {
            if t["name"] == "Planning" {
                for f in t["fields"].as_array_mut().expect("fields") {
                    if f["name"] == "Notes" {
                        *f = serde_json::json!({ "name": "Notes", "type": "singleSelect", "options": { "choices": [{ "name": "ok" }] } });
                    }
                }
            }
        }
    });
    let e = emulator(schema, RateLimits::off()).await;
    let (slot, publication) = setup(&db, &e).await;
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    converge(&e, &db, Duration::from_secs(30)).await;

    exec(&db.pool, &format!(
        "UPDATE program_schedule SET notes = 'not an option' WHERE id = (SELECT id FROM program_schedule WHERE program_id = '{PROGRAM}' ORDER BY date LIMIT 1);
         UPDATE program_schedule SET notes = 'ok' WHERE id = (SELECT id FROM program_schedule WHERE program_id = '{PROGRAM}' ORDER BY date DESC LIMIT 1);
         UPDATE users SET bonus_points = 99 WHERE id = '{USER}';"
    )).await;
    let after = testkit::cdc::current_wal_lsn(&db.pool).await;
    wait_until(Duration::from_secs(30), "a dead letter", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sync_dead_letter WHERE status = 'pending'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap_or(0)
            == 1
    })
    .await;
    let (table, code): (String, String) =
        sqlx::query_as("SELECT table_name, error_code FROM sync_dead_letter")
            .fetch_one(&db.pool)
            .await
            .expect("dl");
    assert_eq!(
        (table.as_str(), code.as_str()),
        ("program_schedule", "INVALID_MULTIPLE_CHOICE_OPTIONS")
    );
    // Everything else synced and the slot moved on.
    wait_until(Duration::from_secs(30), "the rest synced", || async {
        e.admin()
            .records(BASE, "Users")
            .expect("u")
            .iter()
            .any(|r| r["fields"]["Bonus points"] == 99)
            && e.admin()
                .records(BASE, "Planning")
                .expect("p")
                .iter()
                .any(|r| r["fields"]["Notes"] == "ok")
    })
    .await;
    wait_until(Duration::from_secs(30), "the slot advanced past the bad row", || async {
        testkit::cdc::confirmed_past(&db.pool, &slot, &after).await
    })
    .await;

    // Fix the data, replay through the outbox: it syncs and the dead letter is resolved.
    exec(&db.pool, "UPDATE program_schedule SET notes = 'ok' WHERE notes = 'not an option'").await;
    let dl: i64 = sqlx::query_scalar("SELECT id FROM sync_dead_letter")
        .fetch_one(&db.pool)
        .await
        .expect("id");
    cdc::dlq::replay(&db.pool, Some(&[dl])).await.expect("replay");
    wait_until(Duration::from_secs(30), "the replay resolved the dead letter", || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM sync_dead_letter WHERE id = $1")
            .bind(dl)
            .fetch_one(&db.pool)
            .await
            .map(|s| s == "replayed")
            .unwrap_or(false)
    })
    .await;
    sync.stop().await;
}

#[tokio::test]
async fn changes_under_the_inbound_origin_cause_no_airtable_request() {
    let db = test_db().await;
    let (e, _slot, sync) = synced(&db).await;
    e.admin().reset_stats();
    let mut conn = db.pool.acquire().await.expect("conn");
    let origin = cdc::config::INBOUND_ORIGIN;
    for sql in [
        format!("SELECT pg_replication_origin_create('{origin}') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = '{origin}')"),
        format!("SELECT pg_replication_origin_session_setup('{origin}')"),
        format!("UPDATE users SET bonus_points = 12345 WHERE id = '{USER}'"),
        "SELECT pg_replication_origin_session_reset()".to_owned(),
    ] {
        sqlx::raw_sql(&sql).execute(&mut *conn).await.expect("inbound write");
    }
    // A marker after it: once the marker is in Airtable, the echo had its chance.
    exec(&db.pool, &format!("UPDATE programs SET name = 'marker' WHERE id = '{PROGRAM}'")).await;
    wait_until(Duration::from_secs(30), "the marker", || async {
        e.admin()
            .records(BASE, "Programs")
            .expect("p")
            .iter()
            .any(|r| r["fields"]["Name"] == "marker")
    })
    .await;
    let stats = e.admin().stats();
    assert_eq!(stats.records_written, 1, "only the marker: {:?}", stats.requests);
    assert!(e
        .admin()
        .records(BASE, "Users")
        .expect("u")
        .iter()
        .all(|r| r["fields"]["Bonus points"] != 12345));
    sync.stop().await;
}

/// A mixed workload: inserts, updates and deletes over several tables.
async fn workload(pool: sqlx::PgPool, changes: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done = 0;
    let mut habits: Vec<String> = Vec::new();
    let mut day = 0;
    while done < changes {
        let mut sql = String::from("BEGIN;");
        for _ in 0..rng.random_range(1..20) {
            match rng.random_range(0..10) {
                0..=4 => {
                    day += 1;
                    let id = uuid::Uuid::new_v4().to_string();
                    sql += &format!("INSERT INTO habit_usage (id, user_id, method_id, date) VALUES ('{id}', '{USER}', '{HABIT}', DATE '2040-01-01' + {day});");
                    habits.push(id);
                }
                5..=6 if !habits.is_empty() => {
                    let id = &habits[rng.random_range(0..habits.len())];
                    day += 1;
                    sql += &format!("UPDATE habit_usage SET date = DATE '2040-01-01' + {day} WHERE id = '{id}';");
                }
                7 if !habits.is_empty() => {
                    let id = habits.swap_remove(rng.random_range(0..habits.len()));
                    sql += &format!("DELETE FROM habit_usage WHERE id = '{id}';");
                }
                _ => {
                    sql += &format!(
                        "UPDATE users SET bonus_points = {} WHERE id = '{USER}';",
                        rng.random_range(0..1000)
                    );
                }
            }
            done += 1;
        }
        sql += "COMMIT;";
        exec(&pool, &sql).await;
    }
}

#[tokio::test]
async fn crashes_at_random_points_during_20k_changes_leave_airtable_equal_to_postgres() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, publication) = setup(&db, &e).await;
    let writer = tokio::spawn(workload(db.pool.clone(), 20_000, 7));
    let mut rng = StdRng::seed_from_u64(42);
    let mut crashes = 0;
    while crashes < 20 || !writer.is_finished() {
        let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..400))).await;
        sync.crash().await;
        crashes += 1;
    }
    writer.await.expect("writer");
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    converge(&e, &db, Duration::from_secs(600)).await;
    sync.stop().await;
    assert!(crashes >= 20);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter")
        .fetch_one(&db.pool)
        .await
        .expect("dlq");
    assert_eq!(dead, 0);
}

#[tokio::test]
async fn faults_errors_lost_responses_429_storms_and_latency_still_converge_and_respect_the_penalty(
) {
    let db = test_db().await;
    let penalty = Duration::from_millis(300);
    let limits = RateLimits {
        per_base: Some(50),
        per_token: Some(500),
        window: Duration::from_secs(1),
        penalty,
        retry_after_header: false,
    };
    let e = emulator(schema_for(&mapping(), |_| {}), limits).await;
    let (slot, publication) = setup(&db, &e).await;
    e.admin().set_faults(Faults {
        error_rate: 0.1,
        fail_after_apply: 0.1,
        drop_after_apply: 0.05,
        drop_connection: 0.02,
        rate_limit_rate: 0.03,
        latency_ms: 1,
        latency_jitter_ms: 5,
        ..Faults::default()
    });
    let mut config = airtable_config(&e);
    config.base_rps = 50;
    config.token_rps = 500;
    config.penalty = penalty;
    let sync = start_sync(&db.url(), &slot, &publication, config, mapping()).await;
    workload(db.pool.clone(), 2_000, 11).await;
    converge(&e, &db, Duration::from_secs(120)).await;
    sync.stop().await;
    let stats = e.admin().stats();
    assert!(stats.faults_injected > 20, "faults happened: {}", stats.faults_injected);
    assert!(stats.rate_limited > 0, "429s happened");
    assert_eq!(stats.requests_during_penalty, 0, "no request inside a penalty window");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter")
        .fetch_one(&db.pool)
        .await
        .expect("dlq");
    assert_eq!(dead, 0);
}

/// The periodic reconcile is sampled (bounded cost): rows Airtable lost are re-sent. Orphan
/// records and duplicates are the whole reconcile's, after an unclean stop (the kill -9
/// tests), and the daily parity check reports them.
#[tokio::test]
async fn a_periodic_reconcile_restores_what_airtable_lost() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, publication) = setup(&db, &e).await;
    let mut config = airtable_config(&e);
    config.reconcile_interval = Some(Duration::from_millis(300));
    let sync = start_sync(&db.url(), &slot, &publication, config, mapping()).await;
    converge(&e, &db, Duration::from_secs(30)).await;
    // Behind the daemon's back: a record deleted in Airtable.
    let victim = e.admin().records(BASE, "Programs").expect("programs")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    e.admin().delete_record(BASE, "Programs", &victim).expect("delete");
    wait_until(Duration::from_secs(30), "the reconcile re-sent the lost program", || async {
        e.admin().records(BASE, "Programs").expect("p").len() == 1
    })
    .await;
    sync.stop().await;
}
