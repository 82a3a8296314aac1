//! The stream: one replication session at a time, reconnecting with jittered backoff, handing
//! events to a destination and confirming positions to the slot.
//!
//! Confirmation rules (the slot's confirmed_flush_lsn is the only checkpoint):
//! - a Commit's end LSN (or a standalone Message's LSN) is confirmed only once the
//!   destination acknowledged it and everything before it;
//! - a keepalive's wal_end, or the end of a skipped transaction, is confirmed when no
//!   transaction is open and nothing handed is unacknowledged: otherwise write traffic on
//!   unpublished tables would make the slot hold WAL forever.

use super::{
    decoder::Decoder,
    event::{Event, Lsn},
    pgoutput::{self, Message},
};
use crate::{
    backoff::Backoff,
    destination::{Destination, DestinationError, ErrorKind, Poison},
    postgres::ConnInfo,
};
use chrono::{DateTime, Utc};
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};
use secrecy::ExposeSecret;
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;

mod session;

use session::{ChangeAt, Failure, FailureKind, SessionEnd};

/// How the stream connects and paces itself.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub conn: ConnInfo,
    pub slot: String,
    pub publication: String,
    pub application_name: String,
    /// Transactions under this replication origin, or under `<it>_<database>` (the
    /// inbound sync's per-database origin), are the inbound sync's own writes: skipped.
    pub skip_origin: Option<String>,
    /// How often the client reports its position to the server.
    pub status_interval: Duration,
    /// Flush the destination after this long without events.
    pub idle_flush: Duration,
    /// Events the client may buffer ahead of the destination (bounds memory).
    pub buffer_events: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// A change that fails the same way on this many deliveries is isolated (handed to
    /// [`Destination::isolate`]) on the next, and the stream goes on.
    pub isolate_after: u32,
}

impl StreamConfig {
    pub fn new(conn: ConnInfo, slot: impl Into<String>, publication: impl Into<String>) -> Self {
        Self {
            conn,
            slot: slot.into(),
            publication: publication.into(),
            application_name: "cdc".into(),
            skip_origin: None,
            status_interval: Duration::from_secs(1),
            idle_flush: Duration::from_millis(200),
            buffer_events: 4096,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(30),
            isolate_after: 3,
        }
    }
}

/// Why the stream stopped for good (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("replication slot {slot:?} does not exist; create it with `cdc slot create` (or let `cdc run` create it on start)")]
    SlotMissing { slot: String },
    #[error("replication slot {slot:?} is invalidated (its WAL was removed, e.g. past max_slot_wal_keep_size): changes were missed. Run `cdc slot recover` (a new slot, then a full backfill: nothing lost, nothing duplicated); it is never recreated silently")]
    SlotLost { slot: String },
    #[error("publication {publication:?} does not exist; create it with `cdc publication sync`")]
    PublicationMissing { publication: String },
    #[error("not allowed to replicate: {0}; the role needs LOGIN and REPLICATION (ALTER ROLE … REPLICATION)")]
    NotAllowed(String),
    #[error("the destination cannot go on: {0}")]
    Destination(String),
}

/// Live state for health checks and metrics, shared with the ops endpoints.
#[derive(Debug, Default)]
pub struct StreamHealth {
    pub connected: AtomicBool,
    pub confirmed_lsn: AtomicU64,
    pub reconnects: AtomicU64,
    /// Commit time (µs since the Unix epoch) of the oldest committed change not yet
    /// acknowledged by the destination, handed or not; 0 when caught up.
    pub oldest_unacknowledged_micros: AtomicI64,
    /// Why the destination refuses the daemon (an auth error), while it does.
    pub paused: Mutex<Option<String>>,
    is_paused: AtomicBool,
}

impl StreamHealth {
    /// Seconds the oldest unacknowledged commit has waited; 0 when caught up.
    pub fn lag_seconds(&self) -> f64 {
        match self.oldest_unacknowledged_micros.load(Ordering::SeqCst) {
            0 => 0.0,
            t => (Utc::now().timestamp_micros() - t).max(0) as f64 / 1e6,
        }
    }

    pub fn paused(&self) -> Option<String> {
        self.paused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets or clears the pause; clearing is on the hot path (every confirmed position), so
    /// it costs one atomic load when nothing is paused.
    fn set_paused(&self, cause: Option<String>) {
        if cause.is_none() && !self.is_paused.load(Ordering::Relaxed) {
            return;
        }
        self.is_paused.store(cause.is_some(), Ordering::Relaxed);
        metrics::gauge!("cdc_destination_paused").set(if cause.is_some() { 1.0 } else { 0.0 });
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = cause;
    }
}

/// The stream over one slot, owning its destination.
pub struct Stream<D: Destination> {
    config: StreamConfig,
    destination: D,
    health: Arc<StreamHealth>,
    /// The change the last sessions failed at, and how many times in a row.
    repeats: Option<(ChangeAt, u32, String)>,
    /// Unacknowledged work a failed session left (its confirmed position then, and the
    /// oldest commit time): lag keeps counting until the stream is past it.
    stuck: Option<(Lsn, DateTime<Utc>)>,
}

impl<D: Destination> Stream<D> {
    pub fn new(config: StreamConfig, destination: D) -> Self {
        Self {
            config,
            destination,
            health: Arc::new(StreamHealth::default()),
            repeats: None,
            stuck: None,
        }
    }

    pub fn health(&self) -> Arc<StreamHealth> {
        self.health.clone()
    }

    /// The destination, before the stream runs (the leader starts it first).
    pub fn destination_mut(&mut self) -> &mut D {
        &mut self.destination
    }

    /// The destination, never run (a standby stopped before it led).
    pub fn into_destination(self) -> D {
        self.destination
    }

    /// Streams until `shutdown` turns true; returns the destination. Connection losses and
    /// destination failures are retried with jittered backoff; only a missing or invalidated
    /// slot, a missing publication, a refused role or a fatal destination error stop it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<D, StreamError> {
        let lag = tokio::spawn(publish_lag(self.health.clone()));
        let result = self.run_sessions(&mut shutdown).await;
        lag.abort();
        metrics::gauge!("cdc_replication_lag_seconds").set(self.health.lag_seconds());
        result.map(|()| self.destination)
    }

    async fn run_sessions(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), StreamError> {
        let mut backoff = Backoff::new(self.config.reconnect_min, self.config.reconnect_max);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let started = Instant::now();
            let end = self.session(shutdown).await;
            self.health.connected.store(false, Ordering::SeqCst);
            let failure = match end {
                SessionEnd::Shutdown => return Ok(()),
                SessionEnd::Failed(f) => f,
            };
            match failure.kind {
                FailureKind::Connection => {
                    if let Some(fatal) =
                        super::diagnose::fatal(&self.config, &failure.message).await
                    {
                        tracing::error!(error = %fatal, "replication stopped");
                        return Err(fatal);
                    }
                }
                FailureKind::Destination(ErrorKind::Fatal) => {
                    tracing::error!(error = %failure.message, "replication stopped");
                    return Err(StreamError::Destination(failure.message));
                }
                FailureKind::Destination(ErrorKind::Auth) => {
                    metrics::counter!("cdc_destination_paused_total", "cause" => "auth")
                        .increment(1);
                    self.health.set_paused(Some(failure.message.clone()));
                }
                _ => {}
            }
            self.count_repeat(&failure);
            // A session that ran a while was healthy: start the backoff over.
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            self.health.reconnects.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("cdc_reconnects_total").increment(1);
            tracing::warn!(reason = %failure.message, ?delay, attempt = backoff.attempts(), "replication session ended; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Bookkeeping of failures that blame one change: the same change failing again and
    /// again is isolated once it reached `isolate_after`.
    fn count_repeat(&mut self, f: &Failure) {
        let Some(at) = f.at.filter(|_| f.blames_the_change()) else {
            return;
        };
        let n = match &self.repeats {
            Some((prev, n, _)) if *prev == at => n + 1,
            _ => 1,
        };
        tracing::warn!(transaction = %at.transaction, ordinal = at.ordinal, deliveries = n, reason = %f.message, "a change failed its delivery");
        self.repeats = Some((at, n, f.message.clone()));
    }

    /// The change to isolate when the session reaches it.
    fn poisoned(&self) -> Option<(ChangeAt, u32)> {
        match &self.repeats {
            Some((at, n, _)) if *n >= self.config.isolate_after.max(1) => Some((*at, *n)),
            _ => None,
        }
    }

    /// Starts at what the destination already acknowledged (when ahead of the slot): the
    /// server then skips those transactions, so an acknowledged one is never handed again.
    fn replication_config(&self) -> ReplicationConfig {
        let c = &self.config;
        let start = self
            .destination
            .acknowledged()
            .max(Lsn(self.health.confirmed_lsn.load(Ordering::SeqCst)));
        ReplicationConfig::new(
            c.conn.host.clone(),
            c.conn.user.clone(),
            c.conn.password.expose_secret().to_owned(),
            c.conn.database.clone(),
            c.slot.clone(),
            c.publication.clone(),
        )
        .with_port(c.conn.port)
        .with_tls(c.conn.tls())
        // Zero means the slot's confirmed position; the server never goes below it.
        .with_start_lsn(start)
        .with_status_interval(c.status_interval)
        .with_buffer_size(c.buffer_events)
        .with_application_name(c.application_name.clone())
    }
}

/// Keeps `cdc_replication_lag_seconds` true while the stream is blocked (a long flush, a
/// reconnect): it is computed from the oldest unacknowledged commit, every half second.
async fn publish_lag(health: Arc<StreamHealth>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        metrics::gauge!("cdc_replication_lag_seconds").set(health.lag_seconds());
    }
}
