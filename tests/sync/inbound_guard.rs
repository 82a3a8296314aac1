//! No phantom mass deletes: a listing that suddenly lacks much of a table holds those
//! deletions for an operator and deletes nothing; held records that reappear leave the queue;
//! approved ones are deleted, rejected ones stay; a small loss still deletes as before.

use super::inbound::receiving;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use testkit::{
    airtable::{mapping, BASE},
    cdc_output, test_db, TestDb,
};

async fn live_goals(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM goals WHERE deleted_at IS NULL")
        .fetch_one(&db.pool)
        .await
        .expect("count")
}

async fn held(db: &TestDb) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT airtable_id FROM sync_held_deletes WHERE state = 'held'",
    )
    .fetch_all(&db.pool)
    .await
    .expect("held")
    .into_iter()
    .collect()
}

#[tokio::test]
async fn a_listing_lacking_40_percent_of_a_table_holds_every_deletion_and_deletes_nothing() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |c| c.webhooks = false).await;
    let goals = mapping().table_id("goals").expect("goals");
    let new: Vec<Value> = (0..27).map(|i| json!({ "Name": format!("Doel {i}") })).collect();
    let created = e.admin().create_records(BASE, "Goals", new).expect("create");
    r.inbound.reconcile_table(goals).await.expect("reconcile");
    assert_eq!(live_goals(&db).await, 30, "3 demo goals and 27 new ones");

    // 12 of 30 (40 %) vanish from listings, though they still exist.
    let vanished: Vec<String> =
        created.iter().take(12).map(|r| r["id"].as_str().expect("id").to_owned()).collect();
    e.admin().hide_from_listings(&vanished, true);
    r.inbound.reconcile_table(goals).await.expect("reconcile");
    assert_eq!(live_goals(&db).await, 30, "nothing deleted");
    assert_eq!(held(&db).await, vanished.iter().cloned().collect(), "every one of them held");
    // Another pass changes nothing: they stay held, none is deleted.
    r.inbound.reconcile_table(goals).await.expect("reconcile");
    assert_eq!((live_goals(&db).await, held(&db).await.len()), (30, 12));

    // Four reappear: they leave the queue by themselves.
    e.admin().hide_from_listings(&vanished[..4], false);
    r.inbound.reconcile_table(goals).await.expect("reconcile");
    assert_eq!(held(&db).await, vanished[4..].iter().cloned().collect());

    // The operator's decisions, through the CLI.
    let url = db.url();
    let env = [("DATABASE_URL", url.as_str())];
    let (ok, out, err) = cdc_output(&["inbound", "deletes", "list", "--json"], &env).await;
    assert!(ok, "{err}");
    let listed: Vec<Value> = serde_json::from_str(&out).expect("JSON");
    assert_eq!(listed.len(), 8);
    let id_of = |record: &str| {
        listed.iter().find(|l| l["airtable_id"] == record).expect("listed")["id"].to_string()
    };
    let rejected = vanished[4].clone();
    let (ok, out, err) =
        cdc_output(&["inbound", "deletes", "reject", &id_of(&rejected)], &env).await;
    assert!(ok && out.contains("rejected 1"), "{out}{err}");
    let (ok, out, err) = cdc_output(&["inbound", "deletes", "approve", "--all"], &env).await;
    assert!(ok && out.contains("applied 7"), "{out}{err}");
    assert_eq!(live_goals(&db).await, 23, "the seven approved are deleted, the rejected one stays");
    assert!(held(&db).await.is_empty());
    r.inbound.reconcile_table(goals).await.expect("reconcile");
    assert_eq!(live_goals(&db).await, 23, "a rejected record is not inferred deleted again");
    let (ok, out, _) = cdc_output(&["inbound", "deletes", "list"], &env).await;
    assert!(ok && out.contains("no deletions held"), "{out}");

    // A small loss is a deletion as before.
    for rec in &created[20..22] {
        e.admin().delete_record(BASE, "Goals", rec["id"].as_str().expect("id")).expect("delete");
    }
    r.inbound.reconcile_table(goals).await.expect("reconcile");
    assert_eq!(live_goals(&db).await, 21);
    assert!(held(&db).await.is_empty());
    r.stop().await;
}

/// The daemon's readiness carries the warning (still 200) while deletions are held.
#[tokio::test]
async fn held_deletions_make_readyz_warn_and_stay_ready() {
    let db = test_db().await;
    let e = testkit::airtable::emulator(
        testkit::airtable::schema_for(&mapping(), |_| {}),
        airtable_emulator::RateLimits::off(),
    )
    .await;
    let (slot, publication) = super::outbound::setup(&db, &e).await;
    let new: Vec<Value> = (0..27).map(|i| json!({ "Name": format!("Doel {i}") })).collect();
    let created = e.admin().create_records(BASE, "Goals", new).expect("create");
    let port = testkit::cdc::free_port();
    let mut cmd = testkit::airtable::cdc_run(
        &testkit::cargo_bin("cdc"),
        &db.url(),
        &slot,
        &publication,
        port,
        &e,
    );
    for (var, ms) in [
        ("SYNC_INBOUND_RECONCILE_MS", "1000"),
        ("SYNC_INBOUND_RECONCILE_HEALTHY_MS", "1000"),
        ("SYNC_POLL_MS", "500"),
        ("SYNC_POLL_HEALTHY_MS", "500"),
    ] {
        cmd.env(var, ms);
    }
    let _daemon = tokio::process::Command::from(cmd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cdc run");
    let limit = std::time::Duration::from_secs(60);
    testkit::cdc::wait_until(limit, "the goals are in Postgres", || async {
        live_goals(&db).await == 30
    })
    .await;
    let hidden: Vec<String> =
        created.iter().take(12).map(|r| r["id"].as_str().expect("id").to_owned()).collect();
    e.admin().hide_from_listings(&hidden, true);
    let http = reqwest::Client::new();
    testkit::cdc::wait_until(limit, "/readyz warns of the held deletions", || async {
        let Ok(r) = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await else {
            return false;
        };
        r.status() == 200
            && r.text().await.unwrap_or_default().contains("12 inferred deletion(s) held")
    })
    .await;
    assert_eq!(live_goals(&db).await, 30, "nothing deleted");
}
