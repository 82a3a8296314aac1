//! Settled edits: Airtable saves on every keystroke, so an admin typing makes a burst of
//! payloads; the burst applies once, as the record's latest state.

use super::{
    inbound::{receiving, record_of},
    outbound::exec,
};
use serde_json::json;
use std::time::Duration;
use testkit::{airtable::BASE, cdc::wait_until, test_db};

const GOAL: &str = "00000000-0000-4000-8000-000000000201";

#[tokio::test]
async fn twenty_rapid_edits_of_one_record_give_one_postgres_update_and_the_last_value_wins() {
    let db = test_db().await;
    // A settle time well above any scheduling hiccup of a loaded test machine.
    let (e, r) = receiving(&db, |c| c.settle = Duration::from_secs(4)).await;
    // Count the writes the row gets (a test-only trigger).
    exec(
        &db.pool,
        "CREATE TABLE goal_writes (at timestamptz DEFAULT clock_timestamp());
         CREATE FUNCTION count_goal_write() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN INSERT INTO goal_writes DEFAULT VALUES; RETURN NULL; END $$;
         CREATE TRIGGER goal_written AFTER UPDATE ON goals FOR EACH ROW
           WHEN (OLD.description IS DISTINCT FROM NEW.description) EXECUTE FUNCTION count_goal_write();",
    )
    .await;
    let record = record_of(&db, "goals", GOAL).await;
    let description = || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT description FROM goals WHERE id = $1::uuid")
            .bind(GOAL)
            .fetch_one(&db.pool)
            .await
            .ok()
            .flatten()
    };
    // One edit first, so the webhook's reader is idle, waiting for pings, when typing starts.
    e.admin().update_record(BASE, "Goals", &record, json!({ "Description": "R" })).expect("edit");
    wait_until(Duration::from_secs(30), "the first edit is in Postgres", || async {
        description().await.as_deref() == Some("R")
    })
    .await;
    exec(&db.pool, "DELETE FROM goal_writes").await;
    let typed = "Rustig ademen, elke dag";
    for n in (typed.len() - 19)..=typed.len() {
        e.admin()
            .update_record(BASE, "Goals", &record, json!({ "Description": &typed[..n] }))
            .expect("edit");
        // A typist's pace: each keystroke is its own save, and its own ping.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    wait_until(Duration::from_secs(30), "the last keystroke is in Postgres", || async {
        description().await.as_deref() == Some(typed)
    })
    .await;
    let writes: i64 = sqlx::query_scalar("SELECT count(*) FROM goal_writes")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(writes, 1, "20 keystrokes, one Postgres update");
    r.stop().await;
}
