//! High availability: any number of `cdc run` processes share one database and slot. The one
//! holding the slot's leader lock leads (the stream, the inbound side, every Airtable
//! request); the others stand by, answer readiness and pass webhook pings on.
//!
//! - [`lock`]: the session advisory lock on its own connection, the epoch in `sync_leader`.
//! - [`fence`]: whether this process may send to Airtable now; the client asks it.
//!
//! Safety, in order: the lock is taken before START_REPLICATION; the epoch is bumped under
//! it; a leader sends only within `2 × check` of its last good lock check, and checks its
//! epoch before each flush; a successor of a leader that did not step down cleanly sends
//! nothing for `lease` (> 2 × check), so a leader cut off from Postgres has stopped first;
//! after a clean handover it waits the destination's rate window (Airtable: [`HANDOVER_GAP`]).

pub mod fence;
pub mod lock;

pub use fence::{Fence, Fenced, Mode};
pub use lock::{Holder, LeaderInfo};

use crate::{backoff::Backoff, postgres::ConnInfo};
use lock::{LockSession, Takeover};
use schema::postgres::ConfigError;
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

/// An Airtable successor sends nothing for this long even after a clean handover: Airtable
/// limits requests per base per second, and the predecessor's last second still counts.
pub const HANDOVER_GAP: Duration = Duration::from_millis(1100);

/// Leadership timing, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct LeadershipConfig {
    /// SYNC_LEADER_POLL_MS: how often a standby tries the lock (250 ms).
    pub poll: Duration,
    /// SYNC_LEADER_CHECK_MS: how often the leader checks its lock session (1 s); it sends
    /// to Airtable only within two of these of its last good check.
    pub check: Duration,
    /// SYNC_LEADER_LEASE_MS: how long a new leader sends nothing after a leader that did
    /// not step down cleanly (3 s; more than two checks).
    pub lease: Duration,
}

impl Default for LeadershipConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(250),
            check: Duration::from_secs(1),
            lease: Duration::from_secs(3),
        }
    }
}

impl LeadershipConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        use crate::config::millis;
        let d = Self::default();
        let c = Self {
            poll: millis("SYNC_LEADER_POLL_MS", d.poll.as_millis() as u64)?,
            check: millis("SYNC_LEADER_CHECK_MS", d.check.as_millis() as u64)?,
            lease: millis("SYNC_LEADER_LEASE_MS", d.lease.as_millis() as u64)?,
        };
        if c.lease <= c.validity() || c.poll.is_zero() {
            return Err(ConfigError::Invalid {
                var: "SYNC_LEADER_LEASE_MS",
                reason: format!(
                    "{:?} must be more than twice SYNC_LEADER_CHECK_MS ({:?}), and SYNC_LEADER_POLL_MS above 0",
                    c.lease, c.check
                ),
            });
        }
        Ok(c)
    }

    /// How long after a good lock check the leader may send.
    pub fn validity(&self) -> Duration {
        self.check * 2
    }

    /// A leader without a good check for this long gives up the lead; a standby ends the
    /// lock session of a leader whose heartbeat is this old.
    pub fn stale(&self) -> Duration {
        self.check * 10
    }
}

/// This process's side of the election.
pub struct Leadership {
    config: LeadershipConfig,
    conn: ConnInfo,
    app: String,
    slot: String,
    me: Holder,
    fence: Arc<Fence>,
    /// How long a new leader sends nothing after a clean handover (the destination's
    /// rate window: `Destination::handover_gap`).
    handover_gap: Duration,
}

impl Leadership {
    pub fn new(
        config: LeadershipConfig,
        conn: ConnInfo,
        app: &str,
        slot: &str,
        me: Holder,
        fence: Arc<Fence>,
    ) -> Self {
        let (app, slot) = (app.to_owned(), slot.to_owned());
        Self { config, conn, app, slot, me, fence, handover_gap: HANDOVER_GAP }
    }

    pub fn with_handover_gap(self, handover_gap: Duration) -> Self {
        Self { handover_gap, ..self }
    }

    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// Stands by until this process holds the lock (then it is the leader, fenced until
    /// its predecessor's lease ran out); None when shutdown came first.
    pub async fn acquire(&self, shutdown: &mut watch::Receiver<bool>) -> Option<Leader> {
        let mut backoff = Backoff::new(self.config.poll, Duration::from_secs(10));
        let mut session: Option<LockSession> = None;
        let mut last_leader: Option<String> = None;
        loop {
            let wait = match self.try_once(&mut session, &mut last_leader).await {
                Ok(Some((s, takeover))) => return Some(self.lead(s, takeover)),
                Ok(None) => {
                    backoff.reset();
                    self.config.poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, "standby cannot reach Postgres to try the leader lock");
                    self.fence.set(Mode::Standby {
                        leader: last_leader.clone(),
                        reachable: Err(format!(
                            "cannot reach Postgres to try the leader lock: {e}"
                        )),
                    });
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|s| *s) => return None,
            }
            if *shutdown.borrow() {
                return None;
            }
        }
    }

    /// One try of the lock, on the kept session (a new one when there is none or it
    /// closed): the session and the takeover when it was taken; Err when Postgres cannot
    /// be reached.
    async fn try_once(
        &self,
        session: &mut Option<LockSession>,
        last_leader: &mut Option<String>,
    ) -> Result<Option<(LockSession, Takeover)>, crate::postgres::SqlError> {
        let s = match session.take() {
            Some(s) if !s.is_closed() => s,
            _ => LockSession::connect(&self.conn, &self.app, &self.slot).await?,
        };
        if s.try_lock().await? {
            let takeover = s.take_epoch(&self.me).await?;
            return Ok(Some((s, takeover)));
        }
        if let Some(pid) = s.end_stale_holder(self.config.stale()).await? {
            tracing::warn!(backend_pid = pid, stale = ?self.config.stale(), "the leader stopped renewing its heartbeat: ended its lock session");
        }
        let leader = s.leader().await?.filter(|l| l.holding).map(|l| l.describe());
        if leader != *last_leader {
            tracing::info!(leader = leader.as_deref().unwrap_or("none"), "standing by");
        }
        *last_leader = leader.clone();
        self.fence.set(Mode::Standby { leader, reachable: Ok(()) });
        *session = Some(s);
        Ok(None)
    }

    fn lead(&self, session: LockSession, takeover: Takeover) -> Leader {
        let now = Instant::now();
        let wait = match takeover.previous_clean {
            None => Duration::ZERO,
            Some(true) => self.handover_gap,
            Some(false) => self.config.lease.max(self.handover_gap),
        }
        .max(takeover.penalty_left);
        metrics::counter!("cdc_leader_takeovers_total").increment(1);
        tracing::info!(epoch = takeover.epoch, previous_clean = ?takeover.previous_clean, penalty_left = ?takeover.penalty_left, ?wait, host = %self.me.host, pid = self.me.pid, "took the lead");
        self.fence.set(Mode::Leading {
            slot: self.slot.as_str().into(),
            epoch: takeover.epoch,
            since: now,
            writable_from: now + wait,
            valid_until: now + wait + self.config.validity(),
        });
        Leader { session, epoch: takeover.epoch, config: self.config, fence: self.fence.clone() }
    }
}

/// This process leads: it holds the lock session.
pub struct Leader {
    session: LockSession,
    epoch: i64,
    config: LeadershipConfig,
    fence: Arc<Fence>,
}

impl Leader {
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Checks the lock session every `check`, renewing the fence; resolves (the fence
    /// deposed first) when the lead is lost: the session gone, the epoch moved on, or no
    /// check succeeding for `stale`.
    pub async fn hold(&self) -> String {
        let mut tick = tokio::time::interval(self.config.check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_ok = Instant::now();
        loop {
            tick.tick().await;
            let started = Instant::now();
            let beat = self.session.heartbeat(self.fence.penalty_left());
            let reason = match tokio::time::timeout(self.config.check, beat).await {
                Ok(Ok(Some(e))) if e == self.epoch => {
                    self.fence.renew(started, self.config.validity());
                    last_ok = started;
                    continue;
                }
                Ok(Ok(Some(e))) => {
                    format!("epoch {e} replaced ours ({}): another process leads", self.epoch)
                }
                Ok(Ok(None)) => "the slot's sync_leader row is gone".to_owned(),
                Ok(Err(e)) if self.session.is_closed() => format!("lost the lock connection: {e}"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the lock check failed; not sending until one succeeds");
                    metrics::counter!("cdc_leader_check_failures_total").increment(1);
                    String::new()
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.config.check, "the lock check timed out; not sending until one succeeds");
                    metrics::counter!("cdc_leader_check_failures_total").increment(1);
                    String::new()
                }
            };
            let reason = if !reason.is_empty() {
                reason
            } else if last_ok.elapsed() >= self.config.stale() {
                format!("no lock check succeeded for {:?}", self.config.stale())
            } else {
                continue;
            };
            self.fence.depose(reason.clone());
            return reason;
        }
    }

    /// Steps down cleanly (after the last flush was confirmed): the next leader starts at
    /// once.
    pub async fn release(self) {
        self.fence.set(Mode::Deposed { reason: "stepped down".into() });
        match self.session.release(self.epoch, self.fence.penalty_left()).await {
            Ok(()) => tracing::info!(epoch = self.epoch, "stepped down: the lock is free"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the lock cleanly; it goes with the session")
            }
        }
    }
}
