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
    event::{Event, Lsn},
    pgoutput::{self, Message},
    relations::Decoder,
};
use crate::{
    destination::{Destination, DestinationError},
    postgres::ConnInfo,
};
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};
use rand::Rng;
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::watch;

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
        }
    }
}

/// Why the stream stopped for good (everything else is retried).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("replication slot {slot:?} does not exist; create it with `cdc slot create` (or let `cdc run` create it on start)")]
    SlotMissing { slot: String },
    #[error("replication slot {slot:?} is invalidated (its WAL was removed, e.g. past max_slot_wal_keep_size): changes were lost. Drop it (`cdc slot drop`), create it again (`cdc slot create`) and re-send current state; it is never recreated silently")]
    SlotLost { slot: String },
    #[error("publication {publication:?} does not exist; create it with `cdc publication sync`")]
    PublicationMissing { publication: String },
    #[error("not allowed to replicate: {0}; the role needs LOGIN and REPLICATION (ALTER ROLE … REPLICATION)")]
    NotAllowed(String),
}

/// Live state for health checks and metrics, shared with the ops endpoints.
#[derive(Debug, Default)]
pub struct StreamHealth {
    pub connected: AtomicBool,
    pub confirmed_lsn: AtomicU64,
    pub reconnects: AtomicU64,
}

/// A session ended: why.
enum SessionEnd {
    Shutdown,
    Failed(String),
}

/// The stream over one slot, owning its destination.
pub struct Stream<D: Destination> {
    config: StreamConfig,
    destination: D,
    health: Arc<StreamHealth>,
}

/// Handed but not yet acknowledged: (position, commit time, when handed).
type Pending = VecDeque<(Lsn, chrono::DateTime<chrono::Utc>, Instant)>;

impl<D: Destination> Stream<D> {
    pub fn new(config: StreamConfig, destination: D) -> Self {
        Self { config, destination, health: Arc::new(StreamHealth::default()) }
    }

    pub fn health(&self) -> Arc<StreamHealth> {
        self.health.clone()
    }

    /// Streams until `shutdown` turns true; returns the destination. Connection losses are
    /// retried with jittered backoff; only a missing or invalidated slot, a missing
    /// publication or a refused role stop it.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<D, StreamError> {
        let mut attempt: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return Ok(self.destination);
            }
            let started = Instant::now();
            let end = self.session(&mut shutdown).await;
            self.health.connected.store(false, Ordering::SeqCst);
            match end {
                Ok(SessionEnd::Shutdown) => return Ok(self.destination),
                Ok(SessionEnd::Failed(reason)) => {
                    if let Some(fatal) = self.fatal(&reason) {
                        tracing::error!(error = %fatal, "replication stopped");
                        return Err(fatal);
                    }
                    // A session that ran a while was healthy: start the backoff over.
                    if started.elapsed() > Duration::from_secs(30) {
                        attempt = 0;
                    }
                    let cap = self
                        .config
                        .reconnect_min
                        .saturating_mul(1 << attempt.min(16))
                        .min(self.config.reconnect_max);
                    let delay = Duration::from_millis(
                        rand::rng()
                            .random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64),
                    );
                    attempt = attempt.saturating_add(1);
                    self.health.reconnects.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("cdc_reconnects_total").increment(1);
                    tracing::warn!(%reason, ?delay, attempt, "replication session ended; reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn fatal(&self, reason: &str) -> Option<StreamError> {
        let slot = self.config.slot.clone();
        if reason.contains("does not exist") && reason.contains("replication slot") {
            Some(StreamError::SlotMissing { slot })
        } else if reason.contains("can no longer get changes from replication slot")
            || reason.contains("has been invalidated")
        {
            Some(StreamError::SlotLost { slot })
        } else if reason.contains("publication") && reason.contains("does not exist") {
            Some(StreamError::PublicationMissing { publication: self.config.publication.clone() })
        } else if reason.contains("must be superuser or replication role")
            || reason.contains("permission denied to start WAL sender")
            || reason.contains("not permitted to log in")
        {
            Some(StreamError::NotAllowed(reason.to_owned()))
        } else {
            None
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
            c.conn.password.clone(),
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

    /// One session: connect, stream, and on shutdown flush and confirm.
    async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd, StreamError> {
        let mut client = match ReplicationClient::connect(self.replication_config()).await {
            Ok(c) => c,
            Err(e) => return Ok(SessionEnd::Failed(e.to_string())),
        };
        self.health.connected.store(true, Ordering::SeqCst);
        tracing::info!(slot = %self.config.slot, publication = %self.config.publication, "replication session started");

        let mut s = SessionState {
            confirmed: Lsn(self.health.confirmed_lsn.load(Ordering::SeqCst)),
            ..SessionState::default()
        };
        let mut idle = tokio::time::interval(self.config.idle_flush);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_event = Instant::now();

        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break SessionEnd::Shutdown;
                    }
                }
                ev = client.recv() => {
                    last_event = Instant::now();
                    let ev = match ev {
                        Ok(Some(ev)) => ev,
                        Ok(None) => break SessionEnd::Failed("server ended the replication stream".into()),
                        Err(e) => break SessionEnd::Failed(e.to_string()),
                    };
                    if let Err(e) = self.on_event(ev, &mut s).await {
                        break SessionEnd::Failed(e.0);
                    }
                }
                _ = idle.tick() => {
                    // Idle: let the destination finish its batches and do periodic work.
                    if last_event.elapsed() >= self.config.idle_flush {
                        if let Err(e) = self.destination.flush().await {
                            break SessionEnd::Failed(e.0);
                        }
                    }
                }
            }
            self.confirm(&client, &mut s);
        };

        match end {
            SessionEnd::Shutdown => {
                // Stop reading; let the destination finish; confirm what it acknowledged.
                if let Err(e) = self.destination.flush().await {
                    tracing::error!(error = %e.0, "destination failed to flush on shutdown");
                }
                self.confirm(&client, &mut s);
                let confirmed = s.confirmed;
                let _ = client.shutdown().await;
                // The client reports positions on a timer; make the last one certain.
                if let Err(e) = crate::postgres::advance_slot(
                    &self.config.conn,
                    &self.config.application_name,
                    &self.config.slot,
                    confirmed,
                )
                .await
                {
                    tracing::warn!(error = %e, "could not advance the slot on shutdown; it resumes from its last confirmed position");
                }
                tracing::info!(confirmed = %confirmed, "replication stopped cleanly");
                Ok(SessionEnd::Shutdown)
            }
            failed => {
                client.abort();
                Ok(failed)
            }
        }
    }

    /// Applies one replication event to the session and the destination.
    async fn on_event(
        &mut self,
        ev: ReplicationEvent,
        s: &mut SessionState,
    ) -> Result<(), DestinationError> {
        match ev {
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if !s.in_transaction {
                    s.idle_position = s.idle_position.max(wal_end);
                }
            }
            ReplicationEvent::Begin { final_lsn, xid, commit_time_micros } => {
                s.in_transaction = true;
                s.skip = false;
                s.changes = 0;
                // Held until the first change: a transaction under the inbound origin is
                // known only from the Origin message that follows Begin.
                s.held_begin = Some(Event::Begin {
                    xid,
                    final_lsn,
                    commit_time: super::pg_time(commit_time_micros),
                });
            }
            ReplicationEvent::XLogData { data, .. } => {
                metrics::counter!("cdc_bytes_received_total").increment(data.len() as u64);
                let msg = pgoutput::decode(data)
                    .map_err(|e| DestinationError(format!("undecodable pgoutput message: {e}")))?;
                if let Message::Origin { name, .. } = &msg {
                    let ours = self.config.skip_origin.as_deref().is_some_and(|o| {
                        name == o || name.strip_prefix(o).is_some_and(|rest| rest.starts_with('_'))
                    });
                    if ours {
                        s.skip = true;
                        s.held_begin = None;
                    }
                    return Ok(());
                }
                let Some(event) =
                    s.decoder.event(msg).map_err(|e| DestinationError(e.to_string()))?
                else {
                    return Ok(());
                };
                if s.skip {
                    return Ok(());
                }
                match &event {
                    Event::Change(c) => {
                        metrics::counter!("cdc_events_total", "table" => c.relation.name.clone(), "op" => c.op.as_str()).increment(1);
                    }
                    Event::Truncate { relations, .. } => {
                        for r in relations {
                            metrics::counter!("cdc_events_total", "table" => r.name.clone(), "op" => "truncate").increment(1);
                        }
                    }
                    _ => {}
                }
                if let Some(begin) = s.held_begin.take() {
                    self.destination.handle(begin).await?;
                }
                s.changes += 1;
                self.destination.handle(event).await?;
            }
            ReplicationEvent::Message { transactional, lsn, prefix, content } => {
                if transactional {
                    if s.skip {
                        return Ok(());
                    }
                    if let Some(begin) = s.held_begin.take() {
                        self.destination.handle(begin).await?;
                    }
                    s.changes += 1;
                    self.destination
                        .handle(Event::Message { transactional, lsn, prefix, content })
                        .await?;
                } else {
                    self.destination
                        .handle(Event::Message { transactional, lsn, prefix, content })
                        .await?;
                    s.handed = s.handed.max(lsn);
                    s.pending.push_back((lsn, chrono::Utc::now(), Instant::now()));
                }
            }
            ReplicationEvent::Commit { lsn, end_lsn, commit_time_micros } => {
                s.in_transaction = false;
                if s.skip {
                    metrics::counter!("cdc_echo_suppressed_transactions_total").increment(1);
                    s.idle_position = s.idle_position.max(end_lsn);
                } else if s.held_begin.take().is_some() {
                    // Nothing of it was published: nothing to hand.
                    s.idle_position = s.idle_position.max(end_lsn);
                } else {
                    let commit_time = super::pg_time(commit_time_micros);
                    self.destination
                        .handle(Event::Commit { commit_lsn: lsn, end_lsn, commit_time })
                        .await?;
                    metrics::counter!("cdc_transactions_total").increment(1);
                    s.handed = s.handed.max(end_lsn);
                    s.pending.push_back((end_lsn, commit_time, Instant::now()));
                }
                s.skip = false;
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// Confirms the highest safe position (see the module comment).
    fn confirm(&self, client: &ReplicationClient, s: &mut SessionState) {
        let acked = self.destination.acknowledged();
        while let Some((lsn, _, handed_at)) = s.pending.front() {
            if *lsn > acked {
                break;
            }
            metrics::histogram!("cdc_destination_ack_seconds")
                .record(handed_at.elapsed().as_secs_f64());
            s.pending.pop_front();
        }
        let mut safe = acked;
        if s.pending.is_empty() && !s.in_transaction {
            safe = safe.max(s.handed).max(s.idle_position);
        }
        if safe > s.confirmed {
            s.confirmed = safe;
            client.update_applied_lsn(safe);
            self.health.confirmed_lsn.store(safe.0, Ordering::SeqCst);
        }
        lag_gauge(&s.pending);
    }
}

/// Per-session bookkeeping.
#[derive(Default)]
struct SessionState {
    decoder: Decoder,
    in_transaction: bool,
    skip: bool,
    changes: u64,
    held_begin: Option<Event>,
    /// End of the last commit (or standalone message) handed to the destination.
    handed: Lsn,
    /// A position with nothing to deliver before it (keepalive, skipped or empty commit).
    idle_position: Lsn,
    pending: Pending,
    confirmed: Lsn,
}

/// Replication lag in seconds: the age of the oldest unacknowledged commit; 0 when caught up.
fn lag_gauge(pending: &Pending) {
    let lag = pending.front().map_or(0.0, |(_, t, _)| {
        (chrono::Utc::now() - *t).num_milliseconds().max(0) as f64 / 1000.0
    });
    metrics::gauge!("cdc_replication_lag_seconds").set(lag);
}
