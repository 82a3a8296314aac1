//! Transactions that retry when Postgres says retrying is safe.

use super::DbError;
use rand::Rng;
use sqlx::{PgPool, Postgres, Transaction};
use std::{future::Future, pin::Pin, time::Duration, time::Instant};

/// The future a transaction body returns; it borrows the transaction.
pub type TxFuture<'t, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 't>>;

/// Errors that may say "run the whole transaction again".
pub trait Retryable {
    fn is_retryable(&self) -> bool;
}

impl Retryable for DbError {
    fn is_retryable(&self) -> bool {
        DbError::is_retryable(self)
    }
}

/// Isolation level of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    #[default]
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

/// How often and how patiently to retry serialization failures (40001) and deadlocks (40P01).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    /// Backoff before retry n is a random duration in [0, min(max_delay, base_delay * 2^n)].
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub isolation: Isolation,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(250),
            isolation: Isolation::ReadCommitted,
        }
    }
}

impl RetryPolicy {
    pub fn serializable() -> Self {
        Self { isolation: Isolation::Serializable, ..Self::default() }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << retry.min(16)).min(self.max_delay);
        // Full jitter: contenders that collided once should not collide again in lockstep.
        let nanos = rand::rng().random_range(0..=cap.as_nanos().min(u64::MAX as u128) as u64);
        Duration::from_nanos(nanos)
    }
}

/// Runs `body` in a transaction and commits it. A retryable failure — in the body or at
/// commit — rolls back and runs the body again, up to `policy.max_attempts` times; the last
/// error is returned when they are used up.
///
/// ```ignore
/// with_transaction(&pool, &RetryPolicy::default(), |tx| Box::pin(async move {
///     sqlx::query("...").execute(&mut **tx).await?;
///     Ok::<_, DbError>(())
/// })).await?;
/// ```
pub async fn with_transaction<T, E, F>(
    pool: &PgPool,
    policy: &RetryPolicy,
    mut body: F,
) -> Result<T, E>
where
    F: for<'t> FnMut(&'t mut Transaction<'static, Postgres>) -> TxFuture<'t, T, E>,
    E: From<DbError> + Retryable,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = run_once(pool, policy.isolation, &mut body).await;
        match result {
            Ok(value) => {
                metrics::counter!("db_transactions_total", "outcome" => "committed").increment(1);
                metrics::histogram!("db_transaction_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                return Ok(value);
            }
            Err(e) if e.is_retryable() && attempt < policy.max_attempts => {
                metrics::counter!("db_transaction_retries_total").increment(1);
                let delay = policy.backoff(attempt - 1);
                tracing::debug!(attempt, ?delay, "transaction conflict, retrying");
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                let outcome = if e.is_retryable() { "retries_exhausted" } else { "failed" };
                metrics::counter!("db_transactions_total", "outcome" => outcome).increment(1);
                return Err(e);
            }
        }
    }
}

async fn run_once<T, E, F>(pool: &PgPool, isolation: Isolation, body: &mut F) -> Result<T, E>
where
    F: for<'t> FnMut(&'t mut Transaction<'static, Postgres>) -> TxFuture<'t, T, E>,
    E: From<DbError> + Retryable,
{
    let mut tx = pool.begin().await.map_err(DbError::from)?;
    let set = match isolation {
        Isolation::ReadCommitted => None,
        Isolation::RepeatableRead => Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
        Isolation::Serializable => Some("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
    };
    if let Some(sql) = set {
        sqlx::query(sql).execute(&mut *tx).await.map_err(DbError::from)?;
    }
    // On error the transaction is dropped, which rolls it back.
    let value = body(&mut tx).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_by_the_cap() {
        let p = RetryPolicy::default();
        for retry in 0..40 {
            assert!(p.backoff(retry) <= p.max_delay);
        }
        assert!(p.backoff(0) <= p.base_delay);
    }
}
