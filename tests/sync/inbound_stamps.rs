//! One request per user event: a user created in Airtable is applied from its webhook
//! payload alone (select and link cells included), and its pg id goes back into the record
//! later, ten records to a request, from a queue that survives a restart.

use super::{inbound::receiving, outbound::exec};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{
    airtable::{airtable_config, mapping, start_sync, BASE},
    cdc::{prepare, slot_name, wait_until},
    inbound::{pg_id, start_inbound},
    test_db,
};

const LIMIT: Duration = Duration::from_secs(30);

async fn pending_stamps(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sync_pending_stamps")
        .fetch_one(pool)
        .await
        .expect("stamps")
}

/// Requests to the Users table (by name or id) of `kind` in the emulator's log.
pub(super) fn users_requests(e: &airtable_emulator::Emulator, kind: &str) -> usize {
    let id = e.admin().table_id(BASE, "Users");
    e.admin()
        .request_log()
        .iter()
        .filter(|r| r.kind == kind)
        .filter(|r| r.table.as_deref().is_some_and(|t| t == "Users" || Some(t) == id.as_deref()))
        .count()
}

#[tokio::test]
async fn twelve_new_users_are_applied_from_their_payloads_and_stamped_in_two_requests() {
    let db = test_db().await;
    // A delay long enough that all twelve are queued before the first batch is due.
    let (e, r) = receiving(&db, |c| c.stamp_delay = Duration::from_secs(3)).await;
    let company: String = sqlx::query_scalar(
        "SELECT airtable_record_id FROM airtable_id_map WHERE table_name = 'companies' LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .expect("a company is mapped");
    e.admin().reset_stats();
    let mut records = Vec::new();
    for n in 0..12 {
        let created = e
            .admin()
            .create_records(
                BASE,
                "Users",
                vec![json!({ "Email": format!("new{n}@example.com"), "Name": format!("Nieuw {n}"),
                    "Role": "coach", "Status": "active", "Language": "nl", "Company": [company] })],
            )
            .expect("create");
        records.push(created[0]["id"].as_str().expect("id").to_owned());
    }
    wait_until(LIMIT, "all twelve users are in Postgres", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM users u JOIN airtable_id_map m ON m.pg_id = u.id AND m.table_name = 'users'
             WHERE u.email LIKE 'new%@example.com' AND u.role = 'coach' AND u.company_id IS NOT NULL",
        )
        .fetch_one(&db.pool)
        .await
        .expect("count")
            == 12
    })
    .await;
    assert_eq!(users_requests(&e, "list"), 0, "no re-read: the payloads carry every cell");
    wait_until(LIMIT, "every stamp is written", || async { pending_stamps(&db.pool).await == 0 })
        .await;
    let stamped = e.admin().records(BASE, "Users").expect("records");
    for rec in &records {
        let pg = pg_id(&db.pool, "users", rec).await.expect("mapped");
        let fields = &stamped.iter().find(|r| r["id"] == rec.as_str()).expect("record")["fields"];
        assert_eq!(fields["pg_id"], Value::String(pg.to_string()), "{rec}");
    }
    assert_eq!(users_requests(&e, "update"), 2, "twelve stamps, ten to a request");
    r.stop().await;
}

#[tokio::test]
async fn queued_stamps_survive_a_restart_and_an_unstamped_record_is_written_by_its_id() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |c| c.stamp_delay = Duration::from_secs(3600)).await;
    let created = e
        .admin()
        .create_records(
            BASE,
            "Users",
            vec![json!({ "Email": "later@example.com", "Name": "Later", "Role": "user",
                "Status": "active", "Language": "nl" })],
        )
        .expect("create");
    let rec = created[0]["id"].as_str().expect("id").to_owned();
    wait_until(LIMIT, "the user is in Postgres, its stamp queued", || async {
        pg_id(&db.pool, "users", &rec).await.is_some() && pending_stamps(&db.pool).await == 1
    })
    .await;
    let pg = pg_id(&db.pool, "users", &rec).await.expect("mapped");
    r.stop().await;
    // Postgres changes the user before the stamp lands: the outbound write goes to the
    // record by its id, never as a second record.
    let slot = slot_name();
    let publication = format!("{slot}_pub");
    let tables: Vec<String> = mapping().published_tables().into_iter().map(|(_, t)| t).collect();
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    prepare(&db.url(), &publication, &tables, &slot).await;
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    exec(&db.pool, &format!("UPDATE users SET bonus_points = 42 WHERE id = '{pg}'")).await;
    wait_until(LIMIT, "the bonus points reach the record", || async {
        e.admin()
            .records(BASE, "Users")
            .expect("records")
            .iter()
            .any(|r| r["id"] == rec.as_str() && r["fields"]["Bonus points"] == json!(42))
    })
    .await;
    sync.stop().await;
    let users = e.admin().records(BASE, "Users").expect("records");
    assert_eq!(
        users.iter().filter(|r| r["fields"]["Email"] == "later@example.com").count(),
        1,
        "no duplicate record"
    );
    // A new process writes what the stopped one had queued.
    let r = start_inbound(&db.url(), &e, |c| c.stamp_delay = Duration::from_millis(100)).await;
    wait_until(LIMIT, "the queued stamp is written", || async {
        pending_stamps(&db.pool).await == 0
            && e.admin()
                .records(BASE, "Users")
                .expect("records")
                .iter()
                .any(|r| r["id"] == rec.as_str() && r["fields"]["pg_id"] == pg.to_string().as_str())
    })
    .await;
    r.stop().await;
}
