//! `cdc run --destination convex` as a process: kill -9 again and again under load leaves
//! Convex exact with no document gone back in time, and `cdc verify --destination convex`
//! finds a planted drift and repairs it.

use convex_emulator::Emulator;
use std::{collections::HashMap, process::Stdio, time::Duration};
use testkit::{
    cargo_bin,
    cdc::{free_port, slot_name, until_ok, wait_until},
    cdc_output,
    convex::{compare, convex_run, emulator, mirror},
    test_db, TestDb,
};
use tokio::process::{Child, Command};

const DEMO: &str = include_str!("../stack/demo.sql");
const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";

fn daemon(db: &TestDb, e: &Emulator, slot: &str) -> Child {
    Command::from(convex_run(&cargo_bin("cdc"), &db.url(), slot, free_port(), e))
        .env("LOG_FORMAT", "text")
        .env("CONVEX_BACKFILL_ROWS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cdc")
}

async fn exec(pool: &sqlx::PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn kill_9_five_times_under_load_leaves_convex_exact_and_no_document_went_back() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    // Rows from before the slot: the first process starts copying them, and dies in it.
    exec(&db.pool, &format!("INSERT INTO habit_usage (user_id, method_id, date) SELECT '{USER}', '{HABIT}', DATE '2040-01-01' + d FROM generate_series(0, 599) d")).await;
    let e = emulator(&mirror(), true).await;
    let slot = slot_name();
    let writer = {
        let pool = db.pool.clone();
        tokio::spawn(async move {
            // Each round raises the user's points by one: a document that went back in time
            // would show a smaller number after a larger one.
            for round in 0..150 {
                exec(&pool, &format!("
                    INSERT INTO habit_usage (user_id, method_id, date) VALUES ('{USER}', '{HABIT}', DATE '2050-01-01' + {round});
                    UPDATE users SET bonus_points = bonus_points + 1 WHERE id = '{USER}';
                    DELETE FROM habit_usage WHERE id = (SELECT id FROM habit_usage WHERE date < DATE '2041-01-01' ORDER BY date LIMIT 1);
                ")).await;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    for round in 0..5 {
        let before = e.admin().stats().mutations;
        let mut child = daemon(&db, &e, &slot);
        wait_until(Duration::from_secs(60), "the daemon writes to Convex", || async {
            e.admin().stats().mutations > before + 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50 * round)).await;
        child.start_kill().expect("kill -9");
        let _ = child.wait().await;
    }
    let _child = daemon(&db, &e, &slot);
    writer.await.expect("writer");
    let m = mirror();
    until_ok(Duration::from_secs(120), "Convex equals Postgres after the kills", || {
        compare(&e, &db.pool, &m)
    })
    .await;
    let mut last: HashMap<String, f64> = HashMap::new();
    let mut versions: HashMap<(String, String), u64> = HashMap::new();
    for a in e.admin().history() {
        let v = versions.entry((a.table.clone(), a.id.clone())).or_default();
        assert!(a.version >= *v, "{} {}: version {} applied after {}", a.table, a.id, a.version, v);
        *v = a.version;
        if a.table == "users" {
            let points = a.doc["bonus_points"].as_f64().unwrap_or(0.0);
            let seen = last.entry(a.id.clone()).or_insert(points);
            assert!(points >= *seen, "the user's points went back from {seen} to {points}");
            *seen = points;
        }
    }
    let stats = e.admin().stats();
    assert!(stats.stale > 0 || stats.applied > 0);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter WHERE status = 'pending'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(pending, 0, "nothing dead-lettered");
}

#[tokio::test]
async fn verify_finds_a_planted_drift_and_repair_sets_it_right() {
    let db = test_db().await;
    exec(&db.pool, DEMO).await;
    let e = emulator(&mirror(), false).await;
    let slot = slot_name();
    let _child = daemon(&db, &e, &slot);
    let m = mirror();
    until_ok(Duration::from_secs(60), "the initial copy", || compare(&e, &db.pool, &m)).await;
    let env = [
        ("DATABASE_URL", db.url()),
        ("CDC_SLOT", slot.clone()),
        ("CONVEX_URL", e.url()),
        ("CONVEX_DEPLOY_KEY", e.deploy_key().to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (ok, out, err) = cdc_output(&["verify", "--destination", "convex"], &env).await;
    assert!(ok, "equal at first:\n{out}{err}");

    // Behind the daemon's back: a changed document, a missing one, one of no row.
    let goal = "00000000-0000-4000-8000-000000000201";
    let mut doc =
        e.admin().table("goals").expect("goals")[0].doc.as_object().cloned().expect("doc");
    doc.insert("name".into(), "geplant".into());
    e.admin().plant("goals", goal, Some(doc.clone()));
    e.admin().plant("methods", "00000000-0000-4000-8000-000000000401", None);
    e.admin().plant("companies", "00000000-0000-4000-8000-00000000dead", Some(doc));
    let (ok, out, _) = cdc_output(&["verify", "--destination", "convex", "--json"], &env).await;
    assert!(!ok, "a drift fails the verify");
    let parity: serde_json::Value = serde_json::from_str(&out).expect("json");
    let by_table = |t: &str| {
        parity.as_array().expect("tables").iter().find(|p| p["table"] == t).cloned().expect("table")
    };
    assert_eq!(by_table("goals")["differing"], serde_json::json!([goal]));
    assert_eq!(
        by_table("methods")["missing"],
        serde_json::json!(["00000000-0000-4000-8000-000000000401"])
    );
    assert_eq!(
        by_table("companies")["extra"],
        serde_json::json!(["00000000-0000-4000-8000-00000000dead"])
    );

    let (ok, out, err) =
        cdc_output(&["verify", "--destination", "convex", "--repair", "--wait", "60"], &env).await;
    assert!(ok, "repaired:\n{out}{err}");
    until_ok(Duration::from_secs(30), "Convex equals Postgres after the repair", || {
        compare(&e, &db.pool, &m)
    })
    .await;
}
