//! The inbound side heals itself: a fixed record applies whole, a webhook gone under the
//! daemon comes back at once, replayed pings cost nothing, early pings are retried.

use super::{
    inbound::receiving,
    outbound::{exec, DEMO},
};
use airtable_emulator::RateLimits;
use serde_json::json;
use std::time::Duration;
use testkit::{
    airtable::{emulator, mapping, schema_for, BASE, TOKEN},
    cdc::wait_until,
    inbound::{hook_id, pg_id, start_inbound},
    test_db,
};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_parked_record_fixed_by_one_field_is_applied_whole_never_with_column_defaults() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let created = e
        .admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "not an email", "Name": "Beheer", "Role": "admin", "Status": "disabled", "Language": "en" })])
        .expect("create");
    let record = created[0]["id"].as_str().expect("id").to_owned();
    wait_until(LIMIT, "the bad email parked", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_dead_letter WHERE status = 'pending' AND airtable_record_id = $1")
            .bind(&record)
            .fetch_one(&db.pool)
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    // Only the email is fixed: the change carries that one field.
    e.admin()
        .update_record(BASE, "Users", &record, json!({ "Email": "beheer@example.com" }))
        .expect("fix");
    wait_until(LIMIT, "the user applied", || async {
        pg_id(&db.pool, "users", &record).await.is_some()
    })
    .await;
    let row: (String, String, String, Option<String>) =
        sqlx::query_as("SELECT email, role, status, name FROM users WHERE id = $1")
            .bind(pg_id(&db.pool, "users", &record).await)
            .fetch_one(&db.pool)
            .await
            .expect("row");
    assert_eq!(
        row,
        ("beheer@example.com".into(), "admin".into(), "disabled".into(), Some("Beheer".into())),
        "the whole record, as Airtable has it: a user disabled there is never active here"
    );
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter WHERE status = 'pending'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(pending, 0, "its dead letter resolved");
    r.stop().await;
}

#[tokio::test]
async fn a_webhook_deleted_under_the_daemon_is_recreated_at_once() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |c| c.webhook_poll = Duration::from_millis(200)).await;
    let old = hook_id(&db.pool, "users").await.expect("hook");
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v0/bases/{BASE}/webhooks/{old}", e.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success());
    wait_until(LIMIT, "a new users webhook", || async {
        hook_id(&db.pool, "users").await.is_some_and(|id| id != old)
    })
    .await;
    // And it works: a user created now arrives through it.
    let created = e
        .admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "na@example.com", "Name": "Na", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    let record = created[0]["id"].as_str().expect("id").to_owned();
    wait_until(LIMIT, "the user arrived", || async {
        pg_id(&db.pool, "users", &record).await.is_some()
    })
    .await;
    r.stop().await;
}

/// Creates a user in Airtable (its ping is lost: only the test's pings wake the reader).
async fn create_user(e: &airtable_emulator::Emulator, email: &str) -> String {
    let created = e
        .admin()
        .create_records(BASE, "Users", vec![json!({ "Email": email, "Name": "X", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    created[0]["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn a_replayed_ping_reads_payloads_once_and_a_stale_one_not_at_all() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    e.admin().lose_pings(true);
    let hook = hook_id(&db.pool, "users").await.expect("hook");
    let key = testkit::inbound::hook_key(&db.pool, "users").await;
    let http = reqwest::Client::new();
    let ping = |stamp: String| {
        let body = json!({ "base": { "id": BASE }, "webhook": { "id": hook }, "timestamp": stamp })
            .to_string();
        let mac = airtable_emulator::mac_header(&key, body.as_bytes());
        http.post(format!("{}/webhooks/airtable", r.url))
            .header("X-Airtable-Content-MAC", mac)
            .body(body)
            .send()
    };
    let stamp = |ago: chrono::Duration| {
        (chrono::Utc::now() - ago).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    };
    e.admin().reset_stats();
    // A change, then its ping replayed 50 times at once and 20 copies of an old one.
    let first = create_user(&e, "een@example.com").await;
    let now = stamp(chrono::Duration::zero());
    for p in futures::future::join_all((0..50).map(|_| ping(now.clone()))).await {
        assert_eq!(p.expect("ping").status().as_u16(), 200);
    }
    let old = stamp(chrono::Duration::hours(2));
    for p in futures::future::join_all((0..20).map(|_| ping(old.clone()))).await {
        assert_eq!(p.expect("ping").status().as_u16(), 200);
    }
    wait_until(LIMIT, "the first user", || async {
        pg_id(&db.pool, "users", &first).await.is_some()
    })
    .await;
    // A second change with one new ping: read after whatever the copies caused.
    let second = create_user(&e, "twee@example.com").await;
    let later = stamp(chrono::Duration::zero());
    assert_eq!(ping(later).await.expect("ping").status().as_u16(), 200);
    wait_until(LIMIT, "the second user", || async {
        pg_id(&db.pool, "users", &second).await.is_some()
    })
    .await;
    assert_eq!(
        e.admin().stats().count("webhook_payloads"),
        2,
        "one read for the 50 copies, none for the stale ones, one for the new ping"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_ping_before_the_daemon_knows_its_webhooks_is_answered_503_for_a_retry() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    exec(&db.pool, DEMO).await;
    let r = start_inbound(&db.url(), &e, |c| c.webhooks = false).await;
    let body = json!({ "base": { "id": BASE }, "webhook": { "id": "achUNKNOWN0000001" }, "timestamp": "2026-01-01T00:00:00.000Z" }).to_string();
    let answer = reqwest::Client::new()
        .post(format!("{}/webhooks/airtable", r.url))
        .header(
            "X-Airtable-Content-MAC",
            airtable_emulator::mac_header(b"anything", body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("ping");
    assert_eq!(answer.status().as_u16(), 503);
    r.stop().await;
}
