//! Rate limits as the project reads Airtable's: at most N requests in any sliding
//! window, per base and per token; a violation starts a penalty during which everything
//! for that base (or token) gets 429.

use crate::config::RateLimits;
use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

#[derive(Debug, Default)]
struct Bucket {
    accepted: VecDeque<Instant>,
    penalty_until: Option<Instant>,
}

impl Bucket {
    fn in_penalty(&self, now: Instant) -> Option<Duration> {
        self.penalty_until.filter(|u| *u > now).map(|u| u - now)
    }

    fn trim(&mut self, now: Instant, window: Duration) {
        while self.accepted.front().is_some_and(|t| now.duration_since(*t) >= window) {
            self.accepted.pop_front();
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request broke the limit and started a penalty.
    Exceeded { penalty: Duration },
    /// The request arrived while a penalty was running (a well-behaved client sends none).
    DuringPenalty { remaining: Duration },
}

#[derive(Debug, Default)]
pub struct Limiter {
    token: Bucket,
    bases: HashMap<String, Bucket>,
}

impl Limiter {
    /// Admits one request for `base` (None: token-only endpoints such as meta).
    pub fn admit(
        &mut self,
        limits: &RateLimits,
        base: Option<&str>,
        now: Instant,
    ) -> Result<(), Refusal> {
        if let Some(remaining) = self.token.in_penalty(now) {
            return Err(Refusal::DuringPenalty { remaining });
        }
        if let Some(b) = base {
            if let Some(remaining) = self.bases.get(b).and_then(|bucket| bucket.in_penalty(now)) {
                return Err(Refusal::DuringPenalty { remaining });
            }
        }
        self.token.trim(now, limits.window);
        if let Some(limit) = limits.per_token {
            if self.token.accepted.len() >= limit as usize {
                self.token.penalty_until = Some(now + limits.penalty);
                return Err(Refusal::Exceeded { penalty: limits.penalty });
            }
        }
        if let (Some(b), Some(limit)) = (base, limits.per_base) {
            let bucket = self.bases.entry(b.to_owned()).or_default();
            bucket.trim(now, limits.window);
            if bucket.accepted.len() >= limit as usize {
                bucket.penalty_until = Some(now + limits.penalty);
                return Err(Refusal::Exceeded { penalty: limits.penalty });
            }
            bucket.accepted.push_back(now);
        }
        if limits.per_token.is_some() {
            self.token.accepted.push_back(now);
        }
        Ok(())
    }

    /// Starts a penalty as if the limit had been hit (fault injection: 429 storms).
    pub fn penalize(&mut self, base: Option<&str>, penalty: Duration, now: Instant) {
        match base {
            Some(b) => {
                self.bases.entry(b.to_owned()).or_default().penalty_until = Some(now + penalty)
            }
            None => self.token.penalty_until = Some(now + penalty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits {
            per_base: Some(5),
            per_token: Some(50),
            window: Duration::from_secs(1),
            penalty: Duration::from_secs(30),
            retry_after_header: false,
        }
    }

    #[test]
    fn five_in_any_sliding_second_then_a_penalty() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(l.admit(&limits(), Some("app1"), t0 + Duration::from_millis(i * 100)).is_ok());
        }
        // The 6th inside the same second breaks the limit...
        let sixth = t0 + Duration::from_millis(900);
        assert!(matches!(l.admit(&limits(), Some("app1"), sixth), Err(Refusal::Exceeded { .. })));
        // ...and everything for that base waits out the penalty, even after the window moved.
        assert!(matches!(
            l.admit(&limits(), Some("app1"), sixth + Duration::from_secs(5)),
            Err(Refusal::DuringPenalty { .. })
        ));
        // Other bases are unaffected.
        assert!(l.admit(&limits(), Some("app2"), sixth).is_ok());
        assert!(l.admit(&limits(), Some("app1"), sixth + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn a_burst_across_a_window_boundary_still_counts_in_the_sliding_window() {
        // A token bucket with burst 5 would allow 5 at t=0.9 and 5 at t=1.1 (10 in 0.2 s).
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(l.admit(&limits(), Some("a"), t0 + Duration::from_millis(900)).is_ok());
        }
        assert!(l.admit(&limits(), Some("a"), t0 + Duration::from_millis(1100)).is_err());
    }

    #[test]
    fn evenly_spaced_requests_at_the_limit_are_never_refused() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(
                l.admit(&limits(), Some("a"), t0 + Duration::from_millis(i * 200)).is_ok(),
                "request {i}"
            );
        }
    }
}
