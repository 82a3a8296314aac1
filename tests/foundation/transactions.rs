//! The transaction helper really retries a forced serialization failure between two
//! SERIALIZABLE transactions, and gives up after its bound.

use schema::postgres::{with_transaction, DbError, DbErrorKind, RetryPolicy};
use sqlx::PgPool;
use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc,
};
use std::time::Duration;
use testkit::test_db;

/// A concurrent SERIALIZABLE transaction that reads and writes the same table and commits.
async fn interfere(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE").execute(&mut *tx).await?;
    let sum: Option<i64> =
        sqlx::query_scalar("SELECT sum(v)::bigint FROM ledger").fetch_one(&mut *tx).await?;
    sqlx::query("INSERT INTO ledger (v) VALUES ($1)")
        .bind(sum.unwrap_or(0) + 1)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Runs the classic write-skew: read the table, let `interfere` commit a conflicting write
/// for the first `conflicts` attempts, then write. Returns (result, attempts).
async fn write_skew(
    pool: &PgPool,
    conflicts: u32,
    policy: RetryPolicy,
) -> (Result<i64, DbError>, u32) {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let other = pool.clone();
    let result = with_transaction(pool, &policy, move |tx| {
        let counter = counter.clone();
        let other = other.clone();
        Box::pin(async move {
            let attempt = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let sum: Option<i64> = sqlx::query_scalar("SELECT sum(v)::bigint FROM ledger")
                .fetch_one(&mut **tx)
                .await
                .map_err(DbError::from)?;
            if attempt <= conflicts {
                interfere(&other).await.map_err(DbError::from)?;
            }
            sqlx::query("INSERT INTO ledger (v) VALUES ($1)")
                .bind(sum.unwrap_or(0) + 100)
                .execute(&mut **tx)
                .await
                .map_err(DbError::from)?;
            Ok::<_, DbError>(attempt as i64)
        })
    })
    .await;
    (result, attempts.load(Ordering::SeqCst))
}

async fn ledger(pool: &PgPool) {
    sqlx::raw_sql("CREATE TABLE ledger (v bigint NOT NULL); INSERT INTO ledger VALUES (1)")
        .execute(pool)
        .await
        .expect("ledger");
}

#[tokio::test]
async fn a_serialization_failure_is_retried_and_then_commits() {
    let db = test_db().await;
    ledger(&db.pool).await;
    let (result, attempts) = write_skew(&db.pool, 1, RetryPolicy::serializable()).await;
    assert_eq!(result.expect("second attempt commits"), 2);
    assert_eq!(attempts, 2);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger").fetch_one(&db.pool).await.expect("count");
    // the seed row, the interfering write, and exactly one write of ours
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn retries_stop_at_the_bound_with_a_conflict_error_and_nothing_written() {
    let db = test_db().await;
    ledger(&db.pool).await;
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::serializable()
    };
    let (result, attempts) = write_skew(&db.pool, u32::MAX, policy).await;
    let e = result.expect_err("always conflicting");
    assert_eq!(e.kind(), DbErrorKind::Conflict);
    assert_eq!(e.sqlstate(), Some("40001"));
    assert_eq!(attempts, 3);
    let ours: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE v >= 100")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(ours, 0, "a failed transaction must leave nothing behind");
}

#[tokio::test]
async fn non_retryable_errors_are_returned_at_once() {
    let db = test_db().await;
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let result: Result<(), DbError> =
        with_transaction(&db.pool, &RetryPolicy::default(), move |tx| {
            let counter = counter.clone();
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                sqlx::query("INSERT INTO days_of_week (name, iso_day) VALUES ('x', 9)")
                    .execute(&mut **tx)
                    .await
                    .map_err(DbError::from)?;
                Ok(())
            })
        })
        .await;
    assert_eq!(result.expect_err("check").kind(), DbErrorKind::Check);
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
}
