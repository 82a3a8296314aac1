//! Seeded fault injection: the same seed and the same request sequence give the same faults,
//! so a failing test can be replayed.

use crate::config::Faults;
use axum::http::StatusCode;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::{collections::VecDeque, time::Duration};

/// A fault forced onto the next request(s), ahead of the random ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scripted {
    /// Answer with this status (500, 502, 503, 504) without doing anything.
    Error(u16),
    /// 429 and start the base's penalty.
    RateLimit,
    /// Apply the write, then answer 500.
    FailAfterApply,
    /// Apply the write, then drop the connection.
    DropAfterApply,
    /// Drop the connection without doing anything.
    Drop,
}

/// What happens to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub latency: Duration,
    pub before: Option<Before>,
    pub after: Option<After>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    Error(StatusCode),
    BadGateway,
    RateLimit,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Error,
    Drop,
}

#[derive(Debug)]
pub struct Injector {
    pub faults: Faults,
    rng: StdRng,
    script: VecDeque<Scripted>,
}

impl Injector {
    pub fn new(faults: Faults, seed: u64) -> Self {
        Self { faults, rng: StdRng::seed_from_u64(seed), script: VecDeque::new() }
    }

    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    pub fn push_script(&mut self, faults: impl IntoIterator<Item = Scripted>) {
        self.script.extend(faults);
    }

    /// Decides the fate of one request; `write` says whether it changes data.
    pub fn plan(&mut self, write: bool) -> Plan {
        let f = self.faults.clone();
        let mut plan = Plan {
            latency: Duration::from_millis(
                f.latency_ms
                    + if f.latency_jitter_ms > 0 {
                        self.rng.random_range(0..=f.latency_jitter_ms)
                    } else {
                        0
                    },
            ),
            ..Plan::default()
        };
        if let Some(s) = self.script.pop_front() {
            match s {
                Scripted::Error(502) => plan.before = Some(Before::BadGateway),
                Scripted::Error(code) => {
                    plan.before = Some(Before::Error(
                        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    ))
                }
                Scripted::RateLimit => plan.before = Some(Before::RateLimit),
                Scripted::Drop => plan.before = Some(Before::Drop),
                Scripted::FailAfterApply => plan.after = Some(After::Error),
                Scripted::DropAfterApply => plan.after = Some(After::Drop),
            }
            return plan;
        }
        let mut roll = |p: f64| p > 0.0 && self.rng.random_bool(p.min(1.0));
        if roll(f.drop_connection) {
            plan.before = Some(Before::Drop);
        } else if roll(f.rate_limit_rate) {
            plan.before = Some(Before::RateLimit);
        } else if roll(f.error_rate) || (write && roll(f.fail_before_apply)) {
            plan.before = Some(match self.rng.random_range(0..3) {
                0 => Before::Error(StatusCode::INTERNAL_SERVER_ERROR),
                1 => Before::BadGateway,
                _ => Before::Error(StatusCode::SERVICE_UNAVAILABLE),
            });
        } else if write && roll(f.fail_after_apply) {
            plan.after = Some(After::Error);
        } else if write && roll(f.drop_after_apply) {
            plan.after = Some(After::Drop);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_replays_the_same_faults() {
        let faults = Faults {
            error_rate: 0.3,
            fail_after_apply: 0.2,
            drop_connection: 0.1,
            ..Faults::default()
        };
        let run = |seed| {
            let mut i = Injector::new(faults.clone(), seed);
            (0..200).map(|n| i.plan(n % 2 == 0)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|p| p.before.is_some()));
        assert!(run(7).iter().any(|p| p.after.is_some()));
    }

    #[test]
    fn scripted_faults_come_first_and_in_order() {
        let mut i = Injector::new(Faults::default(), 1);
        i.push_script([Scripted::Error(503), Scripted::FailAfterApply]);
        assert_eq!(i.plan(true).before, Some(Before::Error(StatusCode::SERVICE_UNAVAILABLE)));
        assert_eq!(i.plan(true).after, Some(After::Error));
        assert_eq!(i.plan(true), Plan::default());
    }
}
