use cdc::{
    destination::MemoryDestination,
    replication::{Event, Op, Value},
};
use std::{collections::HashMap, time::Duration};
use testkit::{
    cdc::{confirmed_past, current_wal_lsn, prepare, slot_name, start, stream_config, wait_until},
    test_db, Cluster, ClusterOptions,
};

const DEMO: &str = include_str!("../stack/demo.sql");
const USER: &str = "00000000-0000-4000-8000-000000000701";
const PROGRAM: &str = "00000000-0000-4000-8000-000000000801";
const METHOD: &str = "00000000-0000-4000-8000-000000000401";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const OVERTUIGING: &str = "00000000-0000-4000-8000-000000000501";

fn published() -> Vec<String> {
    let mapping = schema::mapping::Mapping::default_mapping().expect("mapping");
    mapping.published_tables().into_iter().map(|(_, t)| t).collect()
}

async fn exec(pool: &sqlx::PgPool, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sql).execute(pool).await {
        panic!("{sql}: {e}");
    }
}

#[tokio::test]
async fn insert_update_delete_and_truncate_on_every_published_table_arrive_with_their_values() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let slot = slot_name();
    let tables = published();
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    prepare(&db.url(), "pub_all", &names, &slot).await;
    let s = start(stream_config(&db.url(), &slot, "pub_all"), MemoryDestination::new());

    // One row per published table, then an update and a delete of each.
    let ids: Vec<(&str, String)> = vec![
        ("users", "INSERT INTO users (id, email, name) VALUES ('10000000-0000-4000-8000-000000000001', 'new@example.com', 'New')".to_owned()),
        ("programs", format!("INSERT INTO programs (id, user_id, start_date, end_date, method_ids) VALUES ('10000000-0000-4000-8000-000000000002', '{USER}', '2030-01-01', '2030-02-01', '{{{METHOD}}}')")),
        ("program_schedule", format!("INSERT INTO program_schedule (id, program_id, user_id, date, method_ids) VALUES ('10000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000002', '{USER}', '2030-01-05', '{{{METHOD}}}')")),
        ("method_usage", format!("INSERT INTO method_usage (id, user_id, method_id, program_id, used_on, remark) VALUES ('10000000-0000-4000-8000-000000000004', '{USER}', '{METHOD}', '10000000-0000-4000-8000-000000000002', '2030-01-05', 'fijn')")),
        ("habit_usage", format!("INSERT INTO habit_usage (id, user_id, method_id, date) VALUES ('10000000-0000-4000-8000-000000000005', '{USER}', '{HABIT}', '2030-01-05')")),
        ("personal_goals", format!("INSERT INTO personal_goals (id, user_id, name) VALUES ('10000000-0000-4000-8000-000000000006', '{USER}', 'Lezen')")),
        ("personal_goal_usage", format!("INSERT INTO personal_goal_usage (id, user_id, personal_goal_id, date) VALUES ('10000000-0000-4000-8000-000000000007', '{USER}', '10000000-0000-4000-8000-000000000006', '2030-01-05')")),
        ("overtuiging_usage", format!("INSERT INTO overtuiging_usage (id, user_id, overtuiging_id, date) VALUES ('10000000-0000-4000-8000-000000000008', '{USER}', '{OVERTUIGING}', '2030-01-05')")),
        ("persoonlijke_overtuigingen", format!("INSERT INTO persoonlijke_overtuigingen (id, user_id, name) VALUES ('10000000-0000-4000-8000-000000000009', '{USER}', 'Ik kan dit')")),
        ("sync_outbox", "INSERT INTO sync_outbox (kind, table_name, pg_id) VALUES ('resync', 'programs', '10000000-0000-4000-8000-000000000002')".to_owned()),
    ];
    assert_eq!(ids.len(), tables.len(), "a statement per published table");
    for (_, sql) in &ids {
        exec(&db.pool, sql).await;
    }
    exec(&db.pool, "UPDATE users SET name = 'Renamed', bonus_points = 5 WHERE id = '10000000-0000-4000-8000-000000000001'").await;
    exec(
        &db.pool,
        "UPDATE programs SET name = 'P' WHERE id = '10000000-0000-4000-8000-000000000002'",
    )
    .await;
    exec(&db.pool, "UPDATE method_usage SET remark = 'nog fijner' WHERE id = '10000000-0000-4000-8000-000000000004'").await;
    exec(&db.pool, "DELETE FROM habit_usage WHERE id = '10000000-0000-4000-8000-000000000005'")
        .await;
    exec(&db.pool, "DELETE FROM programs WHERE id = '10000000-0000-4000-8000-000000000002'").await;
    exec(&db.pool, "TRUNCATE sync_outbox").await;

    // The truncate is the last statement: once it arrived, everything before it has.
    wait_until(Duration::from_secs(20), "truncate", || async {
        s.events().iter().any(|e| matches!(e, Event::Truncate { .. }))
    })
    .await;
    // inserts, 3 updates, 2 deletes and the 2 rows the program's delete cascaded to
    assert_eq!(s.changes().len(), ids.len() + 3 + 2 + 2);
    let changes = s.changes();
    let mut inserted: HashMap<String, usize> = HashMap::new();
    for c in changes.iter().filter(|c| c.op == Op::Insert) {
        *inserted.entry(c.relation.name.clone()).or_default() += 1;
    }
    for t in &tables {
        assert_eq!(inserted.get(t), Some(&1), "insert into {t} arrived once: {inserted:?}");
    }
    let user_update = changes
        .iter()
        .find(|c| c.op == Op::Update && c.relation.name == "users")
        .expect("user update");
    let new = user_update.new.as_ref().expect("new");
    assert_eq!(new.get("name"), Some(&Value::Text("Renamed".into())));
    assert_eq!(new.get("bonus_points"), Some(&Value::Int(5)));
    let program_insert = changes
        .iter()
        .find(|c| c.op == Op::Insert && c.relation.name == "programs")
        .expect("program");
    let row = program_insert.new.as_ref().expect("row");
    assert_eq!(row.get("start_date").expect("date").to_json(), "2030-01-01");
    assert_eq!(row.get("method_ids").expect("links").to_json(), serde_json::json!([METHOD]));
    let deleted: Vec<String> = changes
        .iter()
        .filter(|c| c.op == Op::Delete)
        .map(|c| format!("{}:{}", c.relation.name, c.key()[0].1.to_json().as_str().unwrap_or("")))
        .collect();
    assert!(
        deleted.contains(&"habit_usage:10000000-0000-4000-8000-000000000005".to_owned()),
        "{deleted:?}"
    );
    assert!(
        deleted.contains(&"programs:10000000-0000-4000-8000-000000000002".to_owned()),
        "{deleted:?}"
    );
    assert!(
        deleted.iter().any(|d| d.starts_with("program_schedule:")),
        "cascaded deletes arrive too: {deleted:?}"
    );
    let truncated = s.events().into_iter().find_map(|e| {
        if let Event::Truncate { relations, .. } = e {
            Some(relations[0].name.clone())
        } else {
            None
        }
    });
    assert_eq!(truncated.as_deref(), Some("sync_outbox"));
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_update_leaving_a_large_toasted_text_alone_reports_it_unchanged() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let slot = slot_name();
    prepare(&db.url(), "pub_toast", &["programs"], &slot).await;
    let s = start(stream_config(&db.url(), &slot, "pub_toast"), MemoryDestination::new());
    // Random text does not compress: it must be stored out of line.
    exec(&db.pool, &format!("UPDATE programs SET motivation = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g) WHERE id = '{PROGRAM}'")).await;
    exec(&db.pool, &format!("UPDATE programs SET name = 'only the name' WHERE id = '{PROGRAM}'"))
        .await;
    s.wait_for_changes(2).await;
    let c = s.changes();
    assert!(
        matches!(c[0].new.as_ref().and_then(|r| r.get("motivation")), Some(Value::Text(t)) if t.len() == 12_800)
    );
    let second = c[1].new.as_ref().expect("new");
    assert_eq!(second.get("name"), Some(&Value::Text("only the name".into())));
    assert_eq!(second.get("motivation"), Some(&Value::Unchanged), "unchanged, never null");
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn alter_table_mid_stream_replaces_the_relation() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let slot = slot_name();
    prepare(&db.url(), "pub_alter", &["habit_usage"], &slot).await;
    let s = start(stream_config(&db.url(), &slot, "pub_alter"), MemoryDestination::new());
    exec(&db.pool, &format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', '2031-01-01')")).await;
    exec(&db.pool, "ALTER TABLE habit_usage ADD COLUMN note text").await;
    exec(&db.pool, &format!("INSERT INTO habit_usage (user_id, method_id, date, note) VALUES ('{USER}', '{HABIT}', '2031-01-02', 'added')")).await;
    exec(&db.pool, "ALTER TABLE habit_usage DROP COLUMN note").await;
    exec(&db.pool, &format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', '2031-01-03')")).await;
    s.wait_for_changes(3).await;
    let c = s.changes();
    assert!(c[0].new.as_ref().expect("row").get("note").is_none());
    assert_eq!(c[1].new.as_ref().expect("row").get("note"), Some(&Value::Text("added".into())));
    assert!(c[2].new.as_ref().expect("row").get("note").is_none());
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn a_failing_destination_gets_the_transaction_again_but_never_an_acknowledged_one() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let slot = slot_name();
    prepare(&db.url(), "pub_fail", &["habit_usage"], &slot).await;
    // Calls: tx1 = Begin, 2 changes, Commit (1-4); tx2 = Begin (5), change (6), change (7: fails).
    let s = start(stream_config(&db.url(), &slot, "pub_fail"), MemoryDestination::failing_at(7));
    let insert = |d: &str| {
        format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', '{d}')")
    };
    exec(&db.pool, &format!("BEGIN; {}; {}; COMMIT;", insert("2032-01-01"), insert("2032-01-02")))
        .await;
    exec(
        &db.pool,
        &format!(
            "BEGIN; {}; {}; {}; COMMIT;",
            insert("2032-02-01"),
            insert("2032-02-02"),
            insert("2032-02-03")
        ),
    )
    .await;
    wait_until(
        Duration::from_secs(20),
        "the second transaction committed at the destination",
        || async { s.commits() >= 2 },
    )
    .await;
    let dates: Vec<String> = s
        .changes()
        .iter()
        .map(|c| {
            c.new
                .as_ref()
                .and_then(|r| r.get("date"))
                .map(|v| v.to_json().to_string())
                .unwrap_or_default()
        })
        .collect();
    // tx1 once; tx2's first change handed before the failure, then tx2 in full.
    assert_eq!(dates.iter().filter(|d| d.contains("2032-01-01")).count(), 1, "{dates:?}");
    assert_eq!(dates.iter().filter(|d| d.contains("2032-02-01")).count(), 2, "{dates:?}");
    assert_eq!(dates.iter().filter(|d| d.contains("2032-02-03")).count(), 1, "{dates:?}");
    assert_eq!(s.commits(), 2, "each transaction committed once");
    assert!(s.health.reconnects.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let dest = s.stop().await.expect("stop");
    // A clean stop writes the acknowledged position to the slot.
    let acked = cdc::destination::Destination::acknowledged(&dest).to_string();
    assert!(
        confirmed_past(&db.pool, &slot, &acked).await,
        "the slot must hold the acknowledged position {acked}"
    );
    // A new stream on the same slot (a restart) gets nothing again.
    drop(dest);
    let again = start(stream_config(&db.url(), &slot, "pub_fail"), MemoryDestination::new());
    exec(&db.pool, &insert("2032-03-01")).await;
    again.wait_for_changes(1).await;
    assert_eq!(again.changes().len(), 1, "only the new change after a clean restart");
    again.stop().await.expect("stop");
}

#[tokio::test]
async fn writes_to_unpublished_tables_move_the_confirmed_position_forward() {
    let db = test_db().await;
    let slot = slot_name();
    prepare(&db.url(), "pub_quiet", &["habit_usage"], &slot).await;
    let s = start(stream_config(&db.url(), &slot, "pub_quiet"), MemoryDestination::new());
    exec(&db.pool, "CREATE TABLE scratch (id bigint, pad text); INSERT INTO scratch SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g").await;
    let target = current_wal_lsn(&db.pool).await;
    wait_until(
        Duration::from_secs(30),
        "confirmed_flush_lsn past the unpublished writes",
        || async { confirmed_past(&db.pool, &slot, &target).await },
    )
    .await;
    assert!(s.changes().is_empty());
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn transactions_under_the_inbound_origin_are_skipped_and_confirmed() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let slot = slot_name();
    prepare(&db.url(), "pub_origin", &["habit_usage"], &slot).await;
    let s = start(stream_config(&db.url(), &slot, "pub_origin"), MemoryDestination::new());
    // As the inbound sync writes: the session carries the origin when the transaction commits.
    let mut conn = db.pool.acquire().await.expect("conn");
    let origin = cdc::config::INBOUND_ORIGIN;
    for sql in [
        format!("SELECT pg_replication_origin_create('{origin}') WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = '{origin}')"),
        format!("SELECT pg_replication_origin_session_setup('{origin}')"),
        format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', '2033-01-01')"),
        "SELECT pg_replication_origin_session_reset()".to_owned(),
    ] {
        sqlx::raw_sql(&sql).execute(&mut *conn).await.expect("inbound write");
    }
    let after_echo = current_wal_lsn(&db.pool).await;
    exec(&db.pool, &format!("INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', '2033-01-02')")).await;
    s.wait_for_changes(1).await;
    wait_until(Duration::from_secs(10), "confirmed past the echo", || async {
        confirmed_past(&db.pool, &slot, &after_echo).await
    })
    .await;
    let c = s.changes();
    assert_eq!(c.len(), 1, "the inbound transaction must not be handed on");
    assert_eq!(
        c[0].new.as_ref().and_then(|r| r.get("date")).map(|v| v.to_json()),
        Some(serde_json::json!("2033-01-02"))
    );
    assert_eq!(s.commits(), 1);
    s.stop().await.expect("stop");
}

#[tokio::test]
async fn a_postgres_restart_mid_stream_loses_nothing() {
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
        .await
        .expect("join")
        .expect("cluster");
    let admin = sqlx::PgPool::connect(&cluster.url("postgres")).await.expect("admin");
    exec(&admin, "CREATE DATABASE restart").await;
    admin.close().await;
    let url = cluster.url("restart");
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&url).await.expect("pool");
    exec(&pool, "CREATE TABLE events (id int PRIMARY KEY)").await;
    let slot = slot_name();
    prepare(&url, "pub_restart", &["events"], &slot).await;
    let s = start(stream_config(&url, &slot, "pub_restart"), MemoryDestination::new());
    exec(&pool, "INSERT INTO events SELECT generate_series(1, 100)").await;
    s.wait_for_changes(100).await;
    pool.close().await;

    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.restart().expect("restart");
        cluster
    })
    .await
    .expect("join");
    let pool = sqlx::PgPool::connect(&cluster.url("restart")).await.expect("pool after restart");
    exec(&pool, "INSERT INTO events SELECT generate_series(101, 200)").await;
    wait_until(Duration::from_secs(30), "all 200 rows after the restart", || async {
        let ids: std::collections::HashSet<i64> = s
            .changes()
            .iter()
            .filter_map(|c| match c.new.as_ref()?.get("id")? {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect();
        ids.len() == 200
    })
    .await;
    assert!(s.health.reconnects.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    s.stop().await.expect("stop");
    pool.close().await;
    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
}
