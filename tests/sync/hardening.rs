//! Nothing wedges the outbound sync: values Airtable cannot hold are dead-lettered row by
//! row (once per problem) while everything around them flows, and a refused token pauses the
//! sync instead of eating the data.

use super::outbound::{converge, exec, synced};
use std::time::Duration;
use testkit::{
    airtable::BASE,
    cdc::{confirmed_past, current_wal_lsn, wait_until},
    test_db,
};

const USER: &str = "00000000-0000-4000-8000-000000000701";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const PROGRAM: &str = "00000000-0000-4000-8000-000000000801";

fn habit(id: u32, date: &str) -> String {
    format!("INSERT INTO habit_usage (id, user_id, method_id, date) VALUES ('40000000-0000-4000-8000-{id:012}', '{USER}', '{HABIT}', '{date}');")
}

fn habit_id(id: u32) -> String {
    format!("40000000-0000-4000-8000-{id:012}")
}

async fn pending(pool: &sqlx::PgPool) -> Vec<(String, String, i32, String)> {
    sqlx::query_as(
        "SELECT coalesce(pg_id::text, ''), error_code, attempts, status FROM sync_dead_letter WHERE status = 'pending' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("dead letters")
}

async fn in_airtable(e: &airtable_emulator::Emulator, id: &str) -> bool {
    e.admin()
        .records(BASE, "Habit usage")
        .expect("records")
        .iter()
        .any(|r| r["fields"]["pg_id"] == id)
}

#[tokio::test]
async fn values_airtable_cannot_hold_are_dead_lettered_once_each_and_everything_around_them_flows()
{
    let db = test_db().await;
    let (e, slot, sync) = synced(&db).await;

    // Good, poison, good, in separate transactions and within one.
    exec(&db.pool, &habit(1, "2041-01-01")).await;
    exec(&db.pool, &habit(2, "10000-01-01")).await;
    exec(
        &db.pool,
        &format!(
            "BEGIN; {} {} {} {} COMMIT;",
            habit(3, "2041-01-03"),
            habit(4, "infinity"),
            habit(5, "0044-03-15 BC"),
            habit(6, "2041-01-06")
        ),
    )
    .await;
    exec(&db.pool, &habit(7, "2041-01-07")).await;
    let after = current_wal_lsn(&db.pool).await;
    wait_until(Duration::from_secs(30), "the good rows in Airtable", || async {
        let mut all = true;
        for id in [1, 3, 6, 7] {
            all &= in_airtable(&e, &habit_id(id)).await;
        }
        all
    })
    .await;
    wait_until(Duration::from_secs(30), "the slot past all of them", || async {
        confirmed_past(&db.pool, &slot, &after).await
    })
    .await;
    let dead = pending(&db.pool).await;
    let expected: Vec<(String, String, i32, String)> = [2, 4, 5]
        .iter()
        .map(|id| (habit_id(*id), "UNREPRESENTABLE_VALUE".to_owned(), 1, "pending".to_owned()))
        .collect();
    assert_eq!(dead, expected);
    for id in [2, 4, 5] {
        assert!(!in_airtable(&e, &habit_id(id)).await, "{id} is not in Airtable");
    }
    let message: String =
        sqlx::query_scalar("SELECT error_message FROM sync_dead_letter WHERE pg_id = $1")
            .bind(habit_id(2).parse::<uuid::Uuid>().expect("uuid"))
            .fetch_one(&db.pool)
            .await
            .expect("message");
    assert!(message.contains("habit_usage.date") && message.contains("+10000-01-01"), "{message}");

    // The same row failing again the same way bumps its one dead letter.
    exec(
        &db.pool,
        &format!("UPDATE habit_usage SET date = '12000-01-01' WHERE id = '{}'", habit_id(2)),
    )
    .await;
    wait_until(Duration::from_secs(30), "a second attempt on the same dead letter", || async {
        pending(&db.pool).await.first().is_some_and(|d| d.2 == 2)
    })
    .await;
    assert_eq!(pending(&db.pool).await.len(), 3, "no new row");

    // A later good write of each row resolves its dead letter; then both sides agree.
    exec(&db.pool, &format!("UPDATE habit_usage SET date = '2041-02-02' WHERE id = '{}'; UPDATE habit_usage SET date = '2041-02-04' WHERE id = '{}'; DELETE FROM habit_usage WHERE id = '{}';", habit_id(2), habit_id(4), habit_id(5))).await;
    wait_until(Duration::from_secs(30), "the written rows' dead letters resolved", || async {
        pending(&db.pool).await.iter().all(|d| d.0 == habit_id(5))
    })
    .await;
    converge(&e, &db, Duration::from_secs(30)).await;
    sync.stop().await;
}

#[tokio::test]
async fn an_oversize_value_is_one_dead_letter_with_a_capped_payload_however_often_it_is_sent() {
    let db = test_db().await;
    let (e, slot, sync) = synced(&db).await;
    exec(
        &db.pool,
        &format!("UPDATE programs SET motivation = repeat('x', 150000) WHERE id = '{PROGRAM}'"),
    )
    .await;
    wait_until(Duration::from_secs(30), "a dead letter", || async {
        !pending(&db.pool).await.is_empty()
    })
    .await;
    // Sent again (a restart redelivers, a later write fails the same way): still one row.
    sync.crash().await;
    exec(
        &db.pool,
        &format!("UPDATE programs SET motivation = repeat('y', 160000) WHERE id = '{PROGRAM}'"),
    )
    .await;
    let sync = testkit::airtable::start_sync(
        &db.url(),
        &slot,
        &format!("{slot}_pub"),
        testkit::airtable::airtable_config(&e),
        testkit::airtable::mapping(),
    )
    .await;
    wait_until(Duration::from_secs(30), "the second failure counted on the same row", || async {
        pending(&db.pool).await.first().is_some_and(|d| d.2 >= 2)
    })
    .await;
    let rows: Vec<(String, i32, Option<i32>, serde_json::Value)> =
        sqlx::query_as("SELECT error_code, attempts, payload_bytes, payload FROM sync_dead_letter")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 1, "one row for the one problem");
    let (code, _, bytes, payload) = &rows[0];
    assert_eq!(code, "UNREPRESENTABLE_VALUE");
    assert!(bytes.is_some_and(|b| b > 150_000), "original size noted: {bytes:?}");
    assert_eq!(payload["truncated"], true);
    assert!(payload.to_string().len() < 20_000, "stored capped");
    sync.stop().await;
}

#[tokio::test]
async fn a_revoked_token_pauses_the_sync_without_dead_letters_and_it_resumes_by_itself() {
    let db = test_db().await;
    let (e, slot, sync) = synced(&db).await;
    e.admin().revoke_token(true);
    exec(
        &db.pool,
        &format!(
            "{} UPDATE users SET bonus_points = 4242 WHERE id = '{USER}';",
            habit(10, "2042-01-01")
        ),
    )
    .await;
    let written = current_wal_lsn(&db.pool).await;
    wait_until(Duration::from_secs(30), "the sync paused naming the cause", || async {
        sync.health.paused().is_some_and(|c| c.contains("AIRTABLE_TOKEN"))
    })
    .await;
    // Lag counts the waiting commit while nothing moves.
    wait_until(Duration::from_secs(30), "lag above 1 s while paused", || async {
        sync.health.lag_seconds() > 1.0
    })
    .await;
    assert!(pending(&db.pool).await.is_empty(), "nothing dead-lettered");
    assert!(!confirmed_past(&db.pool, &slot, &written).await, "the slot holds the paused change");
    assert!(!in_airtable(&e, &habit_id(10)).await);

    e.admin().revoke_token(false);
    converge(&e, &db, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(30), "unpaused and caught up", || async {
        sync.health.paused().is_none() && sync.health.lag_seconds() == 0.0
    })
    .await;
    assert!(pending(&db.pool).await.is_empty(), "still nothing dead-lettered");
    sync.stop().await;
}
