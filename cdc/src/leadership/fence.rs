//! The fence: whether this process may send to Airtable now. The Airtable client asks it
//! before every request, after the rate budget granted the slot (a wait there can outlast a
//! lease), so a standby or a deposed leader sends nothing.

use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

/// What this process is, as far as Airtable is concerned.
#[derive(Debug, Clone)]
pub enum Mode {
    /// No leadership involved: the operator commands, and the daemon's start (it reads the
    /// base's schema once to check the token and the mapping).
    Open,
    /// Waiting for the lock. `leader` names the process that holds it, when known.
    Standby { leader: Option<String>, reachable: Result<(), String> },
    /// Holding the lock under `epoch`.
    Leading {
        slot: Arc<str>,
        epoch: i64,
        /// When this process took the lock (a predecessor that died stopped about then).
        since: Instant,
        /// Nothing is sent before this: after a leader that did not step down cleanly, its
        /// lease must run out first (it may be alive behind a partition).
        writable_from: Instant,
        /// Nothing is sent after this unless a lock check succeeds again (renewed by each).
        valid_until: Instant,
    },
    /// The lock was lost (or the epoch moved on): nothing is sent again by this process.
    Deposed { reason: String },
}

/// Why a request was not sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fenced {
    #[error("this process is a standby: only the leader sends to Airtable")]
    Standby,
    #[error("this process is no longer the leader ({0}): it sends nothing more")]
    Deposed(String),
    #[error("this process is stepping down: long work is left to its successor")]
    Stopping,
}

/// Shared by the client (which asks), leadership (which sets) and readiness (which reports).
#[derive(Debug)]
pub struct Fence {
    mode: watch::Sender<Mode>,
    /// A shutdown was asked for: long work (a whole listing, a reconcile) stops early.
    stopping: std::sync::atomic::AtomicBool,
    /// Until when Airtable refuses the base (a 429 this process got): the leader hands it on.
    penalty: std::sync::Mutex<Option<Instant>>,
}

impl Default for Fence {
    fn default() -> Self {
        Self {
            mode: watch::Sender::new(Mode::Open),
            stopping: Default::default(),
            penalty: Default::default(),
        }
    }
}

impl Fence {
    pub fn set_stopping(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Airtable refuses the base until `until` (a 429).
    pub fn penalized_until(&self, until: Instant) {
        let mut p = self.penalty.lock().unwrap_or_else(|e| e.into_inner());
        *p = Some(p.map_or(until, |t| t.max(until)));
    }

    /// How much of the base's penalty is left (zero when none).
    pub fn penalty_left(&self) -> std::time::Duration {
        let p = *self.penalty.lock().unwrap_or_else(|e| e.into_inner());
        p.map_or(std::time::Duration::ZERO, |t| t.saturating_duration_since(Instant::now()))
    }

    pub fn mode(&self) -> Mode {
        self.mode.borrow().clone()
    }

    pub fn set(&self, mode: Mode) {
        let leading = matches!(mode, Mode::Leading { .. });
        metrics::gauge!("cdc_leader").set(if leading { 1.0 } else { 0.0 });
        if let Mode::Leading { epoch, .. } = &mode {
            metrics::gauge!("cdc_leader_epoch").set(*epoch as f64);
        }
        self.mode.send_replace(mode);
    }

    /// A lock check that started at `checked_at` succeeded: sending may go on until
    /// `checked_at + validity`.
    pub fn renew(&self, checked_at: Instant, validity: Duration) {
        self.mode.send_if_modified(|m| match m {
            Mode::Leading { valid_until, .. } => {
                let until = checked_at + validity;
                let moved = until > *valid_until;
                *valid_until = (*valid_until).max(until);
                moved
            }
            _ => false,
        });
    }

    /// For good: the lock is gone or another process leads.
    pub fn depose(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(%reason, "deposed: sending nothing more to Airtable");
        self.set(Mode::Deposed { reason });
    }

    /// Whether a webhook ping received here goes to the leader (through Postgres) instead
    /// of being read here: on a standby, and on a leader that lost the lead. Without
    /// leadership (`Open`) this process reads its own pings.
    pub fn passes_pings_on(&self) -> bool {
        matches!(*self.mode.borrow(), Mode::Standby { .. } | Mode::Deposed { .. })
    }

    /// When this process took the lead (None: it does not lead).
    pub fn leading_since(&self) -> Option<Instant> {
        match &*self.mode.borrow() {
            Mode::Leading { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// The slot and epoch this process leads under.
    pub fn lease(&self) -> Option<(Arc<str>, i64)> {
        match &*self.mode.borrow() {
            Mode::Leading { slot, epoch, .. } => Some((slot.clone(), *epoch)),
            _ => None,
        }
    }

    /// Waits until a request may be sent; returns the epoch it goes out under (None when
    /// no leadership is involved). A leader whose lease lapsed waits for the next good lock
    /// check (or its deposition).
    pub async fn admit(&self) -> Result<Option<i64>, Fenced> {
        let mut rx = self.mode.subscribe();
        loop {
            let wait = match Self::verdict(&rx.borrow_and_update()) {
                Verdict::Send(epoch) => return Ok(epoch),
                Verdict::Refuse(why) => return Err(why),
                Verdict::Wait(until) => until,
            };
            match wait {
                Some(t) => tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = rx.changed() => {}
                },
                None => {
                    metrics::counter!("cdc_leader_lease_waits_total").increment(1);
                    if rx.changed().await.is_err() {
                        return Err(Fenced::Deposed("the fence was dropped".into()));
                    }
                }
            }
        }
    }

    /// Without waiting: Some(epoch) when a request may go out now, None when it would have
    /// to wait (the caller waits in [`Fence::admit`] and asks again).
    pub fn admits_now(&self) -> Result<Option<Option<i64>>, Fenced> {
        match Self::verdict(&self.mode.borrow()) {
            Verdict::Send(epoch) => Ok(Some(epoch)),
            Verdict::Refuse(why) => Err(why),
            Verdict::Wait(_) => Ok(None),
        }
    }

    fn verdict(mode: &Mode) -> Verdict {
        match mode {
            Mode::Open => Verdict::Send(None),
            Mode::Standby { .. } => Verdict::Refuse(Fenced::Standby),
            Mode::Deposed { reason } => Verdict::Refuse(Fenced::Deposed(reason.clone())),
            Mode::Leading { epoch, writable_from, valid_until, .. } => {
                let now = Instant::now();
                if now < *writable_from {
                    Verdict::Wait(Some(*writable_from))
                } else if now < *valid_until {
                    Verdict::Send(Some(*epoch))
                } else {
                    Verdict::Wait(None)
                }
            }
        }
    }
}

/// What the fence says of a request now.
enum Verdict {
    Send(Option<i64>),
    Refuse(Fenced),
    /// Until this instant, or (None) until the mode changes.
    Wait(Option<Instant>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading(from: Duration, valid: Duration) -> Mode {
        let now = Instant::now();
        Mode::Leading {
            slot: "s".into(),
            epoch: 7,
            since: now,
            writable_from: now + from,
            valid_until: now + valid,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_sends_within_its_lease_and_waits_out_the_predecessors() {
        let f = Arc::new(Fence::default());
        assert_eq!(f.admit().await.ok(), Some(None), "open: no leadership involved");
        f.set(Mode::Standby { leader: None, reachable: Ok(()) });
        assert!(matches!(f.admit().await, Err(Fenced::Standby)));

        f.set(leading(Duration::from_secs(3), Duration::from_secs(10)));
        let started = Instant::now();
        assert_eq!(f.admit().await.ok(), Some(Some(7)));
        assert_eq!(started.elapsed(), Duration::from_secs(3), "waited for writable_from");

        // The lease lapses: the request waits for a good check, then goes.
        tokio::time::advance(Duration::from_secs(8)).await;
        let waiting = tokio::spawn({
            let f = f.clone();
            async move { f.admit().await }
        });
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(!waiting.is_finished(), "no sending on a lapsed lease");
        f.renew(Instant::now(), Duration::from_secs(2));
        assert_eq!(waiting.await.expect("join").ok(), Some(Some(7)));

        // Deposed while waiting: refused, and for good.
        tokio::time::advance(Duration::from_secs(3)).await;
        let waiting = tokio::spawn({
            let f = f.clone();
            async move { f.admit().await }
        });
        tokio::task::yield_now().await;
        f.depose("lost the lock connection");
        assert!(matches!(waiting.await.expect("join"), Err(Fenced::Deposed(_))));
        f.renew(Instant::now(), Duration::from_secs(60));
        assert!(matches!(f.admit().await, Err(Fenced::Deposed(_))), "a renewal cannot undo it");
    }
}
