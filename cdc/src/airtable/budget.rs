//! One request budget per base and per token, shared by everything the daemon sends
//! (outbound writes, inbound reads, the users fast lane): never more than N requests in any
//! sliding window, and after a 429 nothing until the penalty is over. The fast lane goes first.

use std::{collections::VecDeque, sync::Mutex, time::Duration};
// tokio's clock: the same as std's in production, pausable in tests.
use tokio::time::Instant;

/// The widest margin 429s can grow the window to.
pub const MAX_MARGIN: Duration = Duration::from_millis(250);

/// Priority of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Users provisioning: ahead of any bulk work.
    Fast,
    Bulk,
}

#[derive(Debug)]
struct Window {
    limit: Option<u32>,
    window: Duration,
    sent: VecDeque<(Instant, Lane)>,
    penalty_until: Option<Instant>,
}

impl Window {
    /// How long to wait before one more request fits, leaving `reserve` slots of the window
    /// free; None = it fits now.
    fn wait(&mut self, now: Instant, reserve: u32) -> Option<Duration> {
        if let Some(until) = self.penalty_until.filter(|u| *u > now) {
            return Some(until - now);
        }
        let limit = self.limit.map(|l| l.saturating_sub(reserve).max(1))? as usize;
        while self.sent.front().is_some_and(|(t, _)| now.duration_since(*t) >= self.window) {
            self.sent.pop_front();
        }
        if self.sent.len() < limit {
            None
        } else {
            // The request that must age out of the window before one more fits.
            let blocking = self.sent.len() - limit;
            self.sent.get(blocking).map(|(t, _)| (*t + self.window).saturating_duration_since(now))
        }
    }
}

#[derive(Debug)]
struct State {
    base: Window,
    token: Window,
    fast_waiting: usize,
    /// Slots of each base window bulk work leaves free while a fast request waits.
    fast_reserve: u32,
}

/// The shared budget of one base and its token.
#[derive(Debug)]
pub struct Budget {
    state: Mutex<State>,
    /// Requests sent through this budget (retries included): what a command cost.
    sent: std::sync::atomic::AtomicU64,
    /// The monthly call count and its budget.
    calls: super::calls::CallMeter,
}

impl Budget {
    pub fn new(per_base: u32, per_token: u32, window: Duration) -> Self {
        let w = |limit: u32| Window {
            limit: (limit > 0).then_some(limit),
            window,
            sent: VecDeque::new(),
            penalty_until: None,
        };
        Self {
            state: Mutex::new(State {
                base: w(per_base),
                token: w(per_token),
                fast_waiting: 0,
                fast_reserve: 0,
            }),
            sent: std::sync::atomic::AtomicU64::new(0),
            calls: super::calls::CallMeter::new(None),
        }
    }

    /// Counts calls against `monthly` (AIRTABLE_MONTHLY_CALL_BUDGET; None = no cap).
    pub fn with_monthly_calls(mut self, monthly: Option<u64>) -> Self {
        self.calls = super::calls::CallMeter::new(monthly);
        self
    }

    /// The month's calls: counted, projected, and how much periodic work must stretch.
    pub fn calls(&self) -> &super::calls::CallMeter {
        &self.calls
    }

    /// Counts every window as full at start: a process restarted within a window of the
    /// previous one cannot know what that one sent, and a burst into Airtable's window
    /// costs a 30 s penalty. So nothing goes out for the first window.
    pub fn starting_full(self) -> Self {
        {
            let mut guard = self.lock();
            let s = &mut *guard;
            let now = Instant::now();
            for w in [&mut s.base, &mut s.token] {
                let n = w.limit.unwrap_or(0) as usize;
                w.sent.extend(std::iter::repeat_n((now, Lane::Bulk), n));
            }
        }
        self
    }

    /// While a fast request waits, bulk work leaves `slots` of each base window to it;
    /// otherwise bulk work may use the whole window.
    pub fn with_fast_share(self, slots: u32) -> Self {
        self.lock().fast_reserve = slots;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more request may be sent, and counts it.
    pub async fn acquire(&self, lane: Lane) {
        if lane == Lane::Fast {
            self.lock().fast_waiting += 1;
        }
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                // Work-conserving: the fast lane's share is held back from bulk work only
                // while a fast request waits, so an idle fast lane costs bulk nothing.
                let reserve =
                    if lane == Lane::Bulk && s.fast_waiting > 0 { s.fast_reserve } else { 0 };
                let wait = s.base.wait(now, reserve).max(s.token.wait(now, 0));
                // The fast lane goes first, but bulk work keeps one request per window:
                // a stream of user events slows the outbound drain, never stops it.
                let bulk_in_window =
                    s.base.sent.iter().any(|(_, l)| *l == Lane::Bulk) || s.base.limit.is_none();
                match wait {
                    None if lane == Lane::Bulk && s.fast_waiting > 0 && bulk_in_window => {
                        Some(Duration::from_millis(2))
                    }
                    None => {
                        s.base.sent.push_back((now, lane));
                        s.token.sent.push_back((now, lane));
                        if lane == Lane::Fast {
                            s.fast_waiting -= 1;
                        }
                        None
                    }
                    some => some,
                }
            };
            match wait {
                None => {
                    self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                Some(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
            }
        }
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Airtable answered 429: nothing more for `penalty`, and the window's margin over one
    /// second doubles (up to [`MAX_MARGIN`]): a 429 says requests arrive closer together
    /// than they were sent, so the margin was too thin for this network.
    pub fn penalize(&self, penalty: Duration) {
        let until = Instant::now() + penalty;
        let mut guard = self.lock();
        let s = &mut *guard;
        s.base.penalty_until = Some(s.base.penalty_until.map_or(until, |u| u.max(until)));
        for w in [&mut s.base, &mut s.token] {
            if let Some(margin) = w.window.checked_sub(Duration::from_secs(1)) {
                let wider = (margin * 2).max(Duration::from_millis(10)).min(MAX_MARGIN);
                if wider > margin {
                    tracing::warn!(
                        margin_ms = wider.as_millis() as u64,
                        "a 429: widening the rate window's margin"
                    );
                    w.window = Duration::from_secs(1) + wider;
                }
            }
        }
    }

    /// The base window now (one second plus the margin).
    pub fn window(&self) -> Duration {
        self.lock().base.window
    }

    /// Whether a penalty is running (for metrics and tests).
    pub fn in_penalty(&self) -> bool {
        self.lock().base.penalty_until.is_some_and(|u| u > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let b = Budget::new(5, 50, Duration::from_secs(1));
        let start = tokio::time::Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            b.acquire(Lane::Bulk).await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate() {
            let in_window =
                times.iter().filter(|u| **u <= *t && *t - **u < Duration::from_secs(1)).count();
            assert!(in_window <= 5, "request {i} at {t:?}: {in_window} in its window");
        }
        assert!(times[5] >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_work_uses_the_whole_window_while_no_fast_request_waits() {
        let b = Budget::new(5, 50, Duration::from_secs(1)).with_fast_share(1);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            b.acquire(Lane::Bulk).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "all five slots, the fast share too");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_fast_request_goes_before_waiting_bulk_work() {
        let b = Arc::new(Budget::new(5, 50, Duration::from_secs(1)).with_fast_share(1));
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            b.acquire(Lane::Bulk).await;
        }
        let bulk = {
            let b = b.clone();
            tokio::spawn(async move {
                b.acquire(Lane::Bulk).await;
                tokio::time::Instant::now()
            })
        };
        tokio::task::yield_now().await;
        b.acquire(Lane::Fast).await;
        let fast_at = tokio::time::Instant::now();
        assert!(fast_at - start <= Duration::from_secs(1) + Duration::from_millis(5));
        let bulk_at = bulk.await.expect("bulk");
        assert!(bulk_at >= fast_at, "the fast request went first");
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_work_keeps_one_request_per_window_under_a_stream_of_fast_requests() {
        let b = Arc::new(Budget::new(5, 50, Duration::from_secs(1)).with_fast_share(1));
        let fast = {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    b.acquire(Lane::Fast).await;
                }
            })
        };
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            b.acquire(Lane::Bulk).await;
        }
        // 40 fast requests take 8 windows; three bulk ones are not made to wait for all.
        assert!(start.elapsed() <= Duration::from_secs(4), "{:?}", start.elapsed());
        fast.await.expect("fast");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_process_sends_nothing_in_its_first_window() {
        let b = Budget::new(5, 50, Duration::from_secs(1)).starting_full();
        let start = tokio::time::Instant::now();
        b.acquire(Lane::Fast).await;
        assert!(start.elapsed() >= Duration::from_secs(1), "{:?}", start.elapsed());
        for _ in 0..4 {
            b.acquire(Lane::Bulk).await;
        }
        assert!(start.elapsed() < Duration::from_secs(2), "then the whole budget");
        let unlimited = Budget::new(0, 0, Duration::from_secs(1)).starting_full();
        let before = tokio::time::Instant::now();
        unlimited.acquire(Lane::Bulk).await;
        assert_eq!(before.elapsed(), Duration::ZERO, "no limit: no wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_penalty_stops_everything_until_it_ends() {
        let b = Budget::new(5, 50, Duration::from_secs(1));
        b.penalize(Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        b.acquire(Lane::Fast).await;
        assert!(start.elapsed() >= Duration::from_secs(30));
    }

    #[test]
    fn every_429_doubles_the_margin_up_to_its_cap() {
        let b = Budget::new(5, 50, Duration::from_millis(1020));
        let mut margins = Vec::new();
        for _ in 0..6 {
            b.penalize(Duration::ZERO);
            margins.push(b.window().as_millis() - 1000);
        }
        assert_eq!(margins, vec![40, 80, 160, 250, 250, 250]);
    }
}
