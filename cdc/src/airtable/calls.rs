//! The monthly call budget (Airtable caps calls per workspace per month: 1,000 on Free,
//! 100,000 on Team). Every request is counted (`airtable_calls_total{kind,work}`) and the
//! last hour projected to a month. Periodic work (safety polls, reconciles, verifies) runs
//! inside [`shaped`]; with AIRTABLE_MONTHLY_CALL_BUDGET set, its intervals stretch so the
//! projection fits the budget ([`CallMeter::stretch`]). Webhook-driven work, lookups and
//! outbound changes are never shaped: when they alone would exceed the budget, the meter
//! says so (log and `airtable_call_budget_exceeded`).

use std::{
    collections::VecDeque,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

/// What a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Periodic backstops: may be spread out to fit the budget.
    Shaped,
    /// Everything else: changes to send, pings to follow, logins waiting.
    Live,
}

impl Work {
    fn label(self) -> &'static str {
        match self {
            Work::Shaped => "periodic",
            Work::Live => "live",
        }
    }
}

tokio::task_local! {
    static WORK: Work;
}

/// Runs `f` as periodic work: its requests count as shaped.
pub async fn shaped<F: Future>(f: F) -> F::Output {
    WORK.scope(Work::Shaped, f).await
}

fn current() -> Work {
    WORK.try_with(|w| *w).unwrap_or(Work::Live)
}

/// Periodic intervals never stretch beyond this (a daily reconcile at most every 24 days).
pub const MAX_STRETCH: f64 = 24.0;
const MINUTE: Duration = Duration::from_secs(60);
const MONTH_MINUTES: f64 = 30.0 * 24.0 * 60.0;

/// Calls per minute over the last hour, by work; bounded memory (60 buckets).
#[derive(Debug)]
pub struct CallMeter {
    budget: Option<u64>,
    started: Instant,
    minutes: Mutex<VecDeque<(u64, [u64; 2])>>,
    warned: Mutex<Option<Instant>>,
}

impl CallMeter {
    pub fn new(budget: Option<u64>) -> Self {
        if let Some(b) = budget {
            metrics::gauge!("airtable_call_budget_monthly").set(b as f64);
        }
        metrics::gauge!("airtable_call_budget_exceeded").set(0.0);
        Self {
            budget,
            started: Instant::now(),
            minutes: Mutex::default(),
            warned: Mutex::default(),
        }
    }

    /// One request sent for `kind` (the operation).
    pub fn record(&self, kind: &'static str) {
        let work = current();
        metrics::counter!("airtable_calls_total", "kind" => kind, "work" => work.label())
            .increment(1);
        let minute = self.started.elapsed().as_secs() / 60;
        let mut m = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        match m.back_mut() {
            Some((at, counts)) if *at == minute => counts[work as usize] += 1,
            _ => {
                let mut counts = [0; 2];
                counts[work as usize] = 1;
                m.push_back((minute, counts));
            }
        }
        while m.front().is_some_and(|(at, _)| *at + 60 <= minute) {
            m.pop_front();
        }
        drop(m);
        let (shaped, live) = self.projected();
        metrics::gauge!("airtable_calls_projected_monthly").set(shaped + live);
        self.check(live);
    }

    /// (periodic, live) calls a month at the last hour's pace (since the start, before an
    /// hour has passed).
    pub fn projected(&self) -> (f64, f64) {
        let m = self.minutes.lock().unwrap_or_else(|e| e.into_inner());
        let span = (self.started.elapsed().as_secs_f64() / MINUTE.as_secs_f64()).clamp(1.0, 60.0);
        let sum = |i: usize| m.iter().map(|(_, c)| c[i]).sum::<u64>() as f64 * MONTH_MINUTES / span;
        (sum(Work::Shaped as usize), sum(Work::Live as usize))
    }

    /// How much longer periodic intervals should be so the month fits the budget: 1 without
    /// a budget or within it, at most [`MAX_STRETCH`].
    pub fn stretch(&self) -> f64 {
        let Some(budget) = self.budget else { return 1.0 };
        let (shaped, live) = self.projected();
        let room = budget as f64 - live;
        if room <= 0.0 {
            return MAX_STRETCH;
        }
        (shaped / room).clamp(1.0, MAX_STRETCH)
    }

    fn check(&self, live: f64) {
        let Some(budget) = self.budget else { return };
        // Also set here: the meter may be made before the recorder is installed.
        metrics::gauge!("airtable_call_budget_monthly").set(budget as f64);
        let over = live > budget as f64;
        metrics::gauge!("airtable_call_budget_exceeded").set(if over { 1.0 } else { 0.0 });
        if over {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(3600)) {
                *warned = Some(Instant::now());
                tracing::warn!(
                    projected = live as u64,
                    budget,
                    "Airtable calls for real traffic alone (changes, pings, logins) would exceed AIRTABLE_MONTHLY_CALL_BUDGET this month; periodic work is already at its slowest"
                );
            }
        }
    }
}

/// `interval` stretched by `meter` (never below it).
pub fn stretched(interval: Duration, meter: &CallMeter) -> Duration {
    interval.mul_f64(meter.stretch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn periodic_work_stretches_to_fit_and_live_work_alone_warns() {
        let meter = CallMeter::new(Some(100_000));
        assert_eq!(meter.stretch(), 1.0, "nothing sent yet");
        // 100 periodic calls in the first minute project to 4.32 M a month.
        shaped(async {
            for _ in 0..100 {
                meter.record("list");
            }
        })
        .await;
        let (p, l) = meter.projected();
        assert_eq!((p as u64, l as u64), (4_320_000, 0));
        assert_eq!(meter.stretch(), MAX_STRETCH, "capped");
        // One periodic call a minute is 43,200 a month.
        let small = CallMeter::new(Some(100_000));
        shaped(async { small.record("list") }).await;
        assert_eq!(small.stretch(), 1.0, "43,200 a month fits");
        let tight = CallMeter::new(Some(20_000));
        shaped(async { tight.record("list") }).await;
        assert!((tight.stretch() - 2.16).abs() < 1e-9, "{}", tight.stretch());
        assert_eq!(stretched(Duration::from_secs(100), &tight), Duration::from_secs(216));
        let unbudgeted = CallMeter::new(None);
        shaped(async { unbudgeted.record("list") }).await;
        assert_eq!(unbudgeted.stretch(), 1.0);
        // Live calls that alone exceed the budget leave periodic work no room at all.
        let busy = CallMeter::new(Some(1_000));
        busy.record("upsert");
        assert_eq!(busy.stretch(), MAX_STRETCH);
    }
}
