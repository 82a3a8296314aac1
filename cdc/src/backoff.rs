//! Jittered exponential backoff, the one policy behind every retry loop of the daemon (the
//! Airtable client, the replication stream, the inbound loops).

use rand::Rng;
use std::{future::Future, time::Duration};

/// Delays between attempts: attempt `n` waits a random time in `[cap/2, cap]`, where `cap`
/// doubles from `min` per attempt up to `max` ("equal jitter": never zero, never in step
/// with another process).
#[derive(Debug, Clone)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), attempt: 0 }
    }

    /// The delay before the next attempt; each call doubles the cap.
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.min.saturating_mul(1 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let cap_ms = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(cap_ms / 2..=cap_ms))
    }

    /// Attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over (after a success, or a long healthy run).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Runs `op` until it succeeds, fails with an error `retryable` refuses, or `max_attempts`
/// attempts failed; sleeps `backoff`'s delays in between. Returns the last error.
pub async fn retry_with_backoff<T, E, F, Fut>(
    mut backoff: Backoff,
    max_attempts: u32,
    retryable: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if !retryable(&e) || backoff.attempts() + 1 >= max_attempts.max(1) => {
                return Err(e)
            }
            Err(_) => tokio::time::sleep(backoff.next_delay()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn delays_double_within_equal_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for cap in [100, 200, 400, 800, 1000, 1000] {
            let d = b.next_delay().as_millis() as u64;
            assert!((cap / 2..=cap).contains(&d), "{d} within [{}, {cap}]", cap / 2);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_success_sleeping_the_backoff() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let out: Result<u32, &str> = retry_with_backoff(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            10,
            |_| true,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err("not yet")
                } else {
                    Ok(n)
                }
            },
        )
        .await;
        assert_eq!(out, Ok(3));
        // Three sleeps: at least 0.5 + 1 + 2 s, at most 1 + 2 + 4 s of the paused clock.
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(3500) && waited <= Duration::from_secs(7),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_a_refused_error_and_at_the_attempt_bound() {
        let calls = AtomicU32::new(0);
        let fatal: Result<(), &str> = retry_with_backoff(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
            10,
            |e| *e != "fatal",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("fatal")
            },
        )
        .await;
        assert_eq!((fatal, calls.swap(0, Ordering::SeqCst)), (Err("fatal"), 1));
        let bounded: Result<(), &str> = retry_with_backoff(
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
            4,
            |_| true,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("again")
            },
        )
        .await;
        assert_eq!((bounded, calls.load(Ordering::SeqCst)), (Err("again"), 4));
    }
}
