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
    backoff::Backoff,
    destination::{Destination, DestinationError, ErrorKind, Poison},
    postgres::ConnInfo,
};
use chrono::{DateTime, Utc};
use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent};
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
        Arc, Mutex,
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
    #[error("replication slot {slot:?} is invalidated (its WAL was removed, e.g. past max_slot_wal_keep_size): changes were lost. Drop it (`cdc slot drop`), create it again (`cdc slot create`) and re-send current state; it is never recreated silently")]
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

    fn set_paused(&self, cause: Option<String>) {
        metrics::gauge!("cdc_destination_paused").set(if cause.is_some() { 1.0 } else { 0.0 });
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = cause;
    }
}

/// Where a change sits in the stream: its transaction's commit LSN and its position among the
/// transaction's data messages (the same on every delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChangeAt {
    transaction: Lsn,
    ordinal: u64,
}

/// A session ended: why.
enum SessionEnd {
    Shutdown,
    Failed(Failure),
}

/// Why a session failed, and at which change when one was at fault.
struct Failure {
    kind: FailureKind,
    message: String,
    at: Option<ChangeAt>,
}

enum FailureKind {
    /// The replication connection or the server (SQLSTATE decides what is fatal).
    Connection,
    /// A message that does not decode.
    Undecodable,
    Destination(ErrorKind),
}

impl Failure {
    fn connection(message: String) -> Self {
        Self { kind: FailureKind::Connection, message, at: None }
    }

    /// Counts toward isolating the change it happened at.
    fn blames_the_change(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Undecodable | FailureKind::Destination(ErrorKind::BadChange)
        )
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

/// Handed but not yet acknowledged: (position, commit time, when handed).
type Unacknowledged = VecDeque<(Lsn, DateTime<Utc>, Instant)>;

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
    async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
        let mut client = match ReplicationClient::connect(self.replication_config()).await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Failed(Failure::connection(e.to_string())),
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
                        Ok(None) => break SessionEnd::Failed(Failure::connection("server ended the replication stream".into())),
                        Err(e) => break SessionEnd::Failed(Failure::connection(e.to_string())),
                    };
                    if let Err(f) = self.on_event(ev, &mut s).await {
                        break SessionEnd::Failed(f);
                    }
                }
                _ = idle.tick() => {
                    // Idle: let the destination finish its batches and do periodic work.
                    if last_event.elapsed() >= self.config.idle_flush {
                        match self.destination.flush().await {
                            Ok(()) => self.health.set_paused(None),
                            Err(e) => break SessionEnd::Failed(destination_failure(e, None)),
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
                    tracing::error!(error = %e, "destination failed to flush on shutdown");
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
                SessionEnd::Shutdown
            }
            SessionEnd::Failed(f) => {
                client.abort();
                // Lag keeps counting from the oldest work this session leaves undone.
                let open = (s.in_transaction && !s.skip).then_some(s.tx_commit_time);
                let oldest = s.unacknowledged.front().map(|(_, t, _)| *t).or(open);
                if let Some(t) = oldest {
                    let since = self.stuck.map_or(t, |(_, prev)| prev.min(t));
                    self.stuck = Some((s.confirmed, since));
                }
                SessionEnd::Failed(f)
            }
        }
    }

    /// Applies one replication event to the session and the destination.
    async fn on_event(
        &mut self,
        ev: ReplicationEvent,
        s: &mut SessionState,
    ) -> Result<(), Failure> {
        match ev {
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if !s.in_transaction {
                    s.idle_position = s.idle_position.max(wal_end);
                }
            }
            ReplicationEvent::Begin { final_lsn, xid, commit_time_micros } => {
                s.in_transaction = true;
                s.skip = false;
                s.ordinal = 0;
                s.tx_final = final_lsn;
                s.tx_commit_time = super::pg_time(commit_time_micros);
                // Held until the first change: a transaction under the inbound origin is
                // known only from the Origin message that follows Begin.
                s.held_begin = Some(Event::Begin { xid, final_lsn, commit_time: s.tx_commit_time });
            }
            ReplicationEvent::XLogData { data, .. } => {
                metrics::counter!("cdc_bytes_received_total").increment(data.len() as u64);
                // Data messages are numbered within their transaction (Relation and Type
                // messages are not: a new session sends them again, elsewhere).
                let at = is_data_message(&data)
                    .then(|| ChangeAt { transaction: s.tx_final, ordinal: s.next_ordinal() });
                if let Some((poisoned, attempts)) = self.poisoned() {
                    if at == Some(poisoned) && !s.skip {
                        return self.isolate(s, poisoned, attempts, &data).await;
                    }
                }
                let msg = pgoutput::decode(data).map_err(|e| Failure {
                    kind: FailureKind::Undecodable,
                    message: format!("undecodable pgoutput message: {e}"),
                    at,
                })?;
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
                let event = s.decoder.event(msg).map_err(|e| Failure {
                    kind: FailureKind::Undecodable,
                    message: e.to_string(),
                    at,
                })?;
                let Some(event) = event else { return Ok(()) };
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
                self.hand_begin(s, at).await?;
                self.hand(event, at).await?;
            }
            ReplicationEvent::Message { transactional, lsn, prefix, content } => {
                let event = Event::Message { transactional, lsn, prefix, content };
                if transactional {
                    let at = Some(ChangeAt { transaction: s.tx_final, ordinal: s.next_ordinal() });
                    if s.skip {
                        return Ok(());
                    }
                    self.hand_begin(s, at).await?;
                    self.hand(event, at).await?;
                } else {
                    self.hand(event, None).await?;
                    s.handed = s.handed.max(lsn);
                    s.unacknowledged.push_back((lsn, Utc::now(), Instant::now()));
                }
            }
            ReplicationEvent::Commit { lsn, end_lsn, commit_time_micros } => {
                s.in_transaction = false;
                if s.skip {
                    metrics::counter!("cdc_echo_suppressed_transactions_total").increment(1);
                    s.idle_position = s.idle_position.max(end_lsn);
                } else if s.held_begin.take().is_some() {
                    // Nothing of it was published (or its only change was isolated).
                    s.idle_position = s.idle_position.max(end_lsn);
                } else {
                    let commit_time = super::pg_time(commit_time_micros);
                    self.hand(Event::Commit { commit_lsn: lsn, end_lsn, commit_time }, None)
                        .await?;
                    metrics::counter!("cdc_transactions_total").increment(1);
                    s.handed = s.handed.max(end_lsn);
                    s.unacknowledged.push_back((end_lsn, commit_time, Instant::now()));
                }
                s.skip = false;
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(())
    }

    /// Hands the transaction's Begin before its first handed event.
    async fn hand_begin(
        &mut self,
        s: &mut SessionState,
        at: Option<ChangeAt>,
    ) -> Result<(), Failure> {
        match s.held_begin.take() {
            Some(begin) => self.hand(begin, at).await,
            None => Ok(()),
        }
    }

    async fn hand(&mut self, event: Event, at: Option<ChangeAt>) -> Result<(), Failure> {
        self.destination.handle(event).await.map_err(|e| destination_failure(e, at))
    }

    /// Gives up on the change at `at`: the destination records it, the stream goes on.
    async fn isolate(
        &mut self,
        s: &mut SessionState,
        at: ChangeAt,
        attempts: u32,
        data: &bytes::Bytes,
    ) -> Result<(), Failure> {
        // What can be known of it: the decoded row, or the raw message.
        let (table, payload) = match pgoutput::decode(data.clone())
            .map_err(|e| e.to_string())
            .and_then(|m| s.decoder.event(m).map_err(|e| e.to_string()))
        {
            Ok(Some(Event::Change(c))) => {
                let row = c.new.as_ref().or(c.old.as_ref()).map(|r| r.to_json());
                (Some(c.relation.name.clone()), serde_json::json!(row))
            }
            Ok(Some(Event::Truncate { relations, .. })) => (
                None,
                serde_json::json!({ "truncate": relations.iter().map(|r| &r.name).collect::<Vec<_>>() }),
            ),
            Ok(_) => (None, serde_json::Value::Null),
            Err(_) => {
                let raw: String = data.iter().take(4096).map(|b| format!("{b:02x}")).collect();
                (None, serde_json::json!({ "raw_hex": raw, "bytes": data.len() }))
            }
        };
        let reason = self.repeats.as_ref().map(|(_, _, m)| m.clone()).unwrap_or_default();
        let poison = Poison {
            table,
            payload,
            transaction: at.transaction,
            ordinal: at.ordinal,
            attempts,
            reason,
        };
        self.destination.isolate(poison).await.map_err(|e| destination_failure(e, None))?;
        metrics::counter!("cdc_isolated_changes_total").increment(1);
        self.repeats = None;
        Ok(())
    }

    /// Confirms the highest safe position (see the module comment).
    fn confirm(&mut self, client: &ReplicationClient, s: &mut SessionState) {
        let acked = self.destination.acknowledged();
        while let Some((lsn, _, handed_at)) = s.unacknowledged.front() {
            if *lsn > acked {
                break;
            }
            metrics::histogram!("cdc_destination_ack_seconds")
                .record(handed_at.elapsed().as_secs_f64());
            s.unacknowledged.pop_front();
        }
        let mut safe = acked;
        if s.unacknowledged.is_empty() && !s.in_transaction {
            safe = safe.max(s.handed).max(s.idle_position);
        }
        if safe > s.confirmed {
            s.confirmed = safe;
            client.update_applied_lsn(safe);
            self.health.confirmed_lsn.store(safe.0, Ordering::SeqCst);
            // The destination takes work again: a pause for its credentials is over.
            self.health.set_paused(None);
        }
        if self.stuck.is_some_and(|(at, _)| s.confirmed > at) {
            self.stuck = None;
        }
        let oldest = [
            s.unacknowledged.front().map(|(_, t, _)| *t),
            s.open_commit_time(),
            self.stuck.map(|(_, t)| t),
        ]
        .into_iter()
        .flatten()
        .min();
        self.health
            .oldest_unacknowledged_micros
            .store(oldest.map_or(0, |t| t.timestamp_micros().max(1)), Ordering::SeqCst);
    }
}

/// The tags of pgoutput's data messages: insert, update, delete, truncate.
fn is_data_message(data: &[u8]) -> bool {
    matches!(data.first(), Some(b'I' | b'U' | b'D' | b'T'))
}

fn destination_failure(e: DestinationError, at: Option<ChangeAt>) -> Failure {
    Failure { kind: FailureKind::Destination(e.kind), message: e.to_string(), at }
}

/// Per-session bookkeeping.
#[derive(Default)]
struct SessionState {
    decoder: Decoder,
    in_transaction: bool,
    skip: bool,
    /// The open transaction: its commit LSN and time, and its data messages so far.
    tx_final: Lsn,
    tx_commit_time: DateTime<Utc>,
    ordinal: u64,
    held_begin: Option<Event>,
    /// End of the last commit (or standalone message) handed to the destination.
    handed: Lsn,
    /// A position with nothing to deliver before it (keepalive, skipped or empty commit).
    idle_position: Lsn,
    unacknowledged: Unacknowledged,
    confirmed: Lsn,
}

impl SessionState {
    fn next_ordinal(&mut self) -> u64 {
        self.ordinal += 1;
        self.ordinal - 1
    }

    /// The open transaction's commit time, once it is being handed (not a skipped one).
    fn open_commit_time(&self) -> Option<DateTime<Utc>> {
        (self.in_transaction && !self.skip && self.held_begin.is_none())
            .then_some(self.tx_commit_time)
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
