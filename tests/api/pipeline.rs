//! The pipelined hot reads: the same answers as the pool's, and a lost connection costs
//! nothing but a fallback to the pool until it is replaced.

use serde_json::json;
use std::time::Duration;
use testkit::{
    api::{serve_with, user_with_password, Client, DEMO},
    cdc::wait_until,
    test_db,
};

async fn pipelined(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'api-test-pipeline' AND datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .expect("activity")
}

#[tokio::test]
async fn pipelined_reads_answer_like_the_pool_and_survive_a_lost_connection() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let piped = serve_with(&db.url(), |c| {
        c.pipeline_connections = 3;
        c.read_through_wait = Duration::ZERO;
    })
    .await;
    let pooled = serve_with(&db.url(), |c| {
        c.pipeline_connections = 0;
        c.read_through_wait = Duration::ZERO;
    })
    .await;
    let (a, _) = Client::signed_in(&piped, "demo@example.com").await;
    let (b, _) = Client::signed_in(&pooled, "demo@example.com").await;
    for path in ["/api/programs", "/api/habit-usage"] {
        let (sa, ba) = a.get(path).await;
        let (sb, bb) = b.get(path).await;
        assert_eq!((sa.as_u16(), sb.as_u16()), (200, 200), "{path}: {ba} / {bb}");
        assert_eq!(ba, bb, "{path}: the same answer either way");
        assert_ne!(ba, json!([]), "{path}: the demo user has data");
    }
    assert_eq!(pipelined(&db.pool).await, 3);

    // The server drops the pipelined connections: requests fall back to the pool at once,
    // and the connections are replaced.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'api-test-pipeline' AND datname = current_database()")
        .execute(&db.pool)
        .await
        .expect("terminate");
    for _ in 0..5 {
        let (s, body) = a.get("/api/programs").await;
        assert_eq!(s.as_u16(), 200, "{body}");
    }
    wait_until(Duration::from_secs(10), "the pipelined connections are back", || async {
        pipelined(&db.pool).await == 3
    })
    .await;
    let (s, _) = a.get("/api/habit-usage").await;
    assert_eq!(s.as_u16(), 200);
}
