//! One replication session: events in, handed to the destination in order, positions
//! confirmed by the rules in the stream's module comment; a change that keeps failing is
//! isolated here.

use super::*;

/// Where a change sits in the stream: its transaction's commit LSN and its position among the
/// transaction's data messages (the same on every delivery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChangeAt {
    pub(super) transaction: Lsn,
    pub(super) ordinal: u64,
}

/// A session ended: why.
pub(super) enum SessionEnd {
    Shutdown,
    Failed(Failure),
}

/// Why a session failed, and at which change when one was at fault.
pub(super) struct Failure {
    pub(super) kind: FailureKind,
    pub(super) message: String,
    pub(super) at: Option<ChangeAt>,
}

pub(super) enum FailureKind {
    /// The replication connection or the server (SQLSTATE decides what is fatal).
    Connection,
    /// A message that does not decode.
    Undecodable,
    Destination(ErrorKind),
}

impl Failure {
    pub(super) fn connection(message: String) -> Self {
        Self { kind: FailureKind::Connection, message, at: None }
    }

    /// Counts toward isolating the change it happened at.
    pub(super) fn blames_the_change(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Undecodable | FailureKind::Destination(ErrorKind::BadChange)
        )
    }
}

/// Waits for the destination's acknowledgements to change; true when it dropped their
/// sender (never, without one).
async fn acknowledged(acks: &mut Option<watch::Receiver<()>>) -> bool {
    match acks {
        Some(rx) => rx.changed().await.is_err(),
        None => std::future::pending().await,
    }
}

/// Handed but not yet acknowledged: (position, commit time, when handed).
pub(super) type Unacknowledged = VecDeque<(Lsn, DateTime<Utc>, Instant)>;

impl<D: Destination> Stream<D> {
    /// One session: connect, stream, and on shutdown flush and confirm.
    pub(super) async fn session(&mut self, shutdown: &mut watch::Receiver<bool>) -> SessionEnd {
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
        let mut acks = self.destination.acknowledgements();

        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break SessionEnd::Shutdown;
                    }
                }
                ev = client.recv() => {
                    // Keepalives are not activity: a busy cluster (other databases' WAL)
                    // sends them often, and they must not keep the idle flush away.
                    if !matches!(ev, Ok(Some(ReplicationEvent::KeepAlive { .. }))) {
                        last_event = Instant::now();
                    }
                    let ev = match ev {
                        Ok(Some(ev)) => ev,
                        Ok(None) => break SessionEnd::Failed(Failure::connection("server ended the replication stream".into())),
                        Err(e) => break SessionEnd::Failed(Failure::connection(e.to_string())),
                    };
                    if let Err(f) = self.on_event(ev, &mut s).await {
                        break SessionEnd::Failed(f);
                    }
                }
                gone = acknowledged(&mut acks) => {
                    // Confirmed below, like after any event.
                    if gone {
                        acks = None;
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
                s.tx_commit_time = crate::replication::pg_time(commit_time_micros);
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
                        // Boxed: the rare path must not grow every event's future.
                        return Box::pin(self.isolate(s, poisoned, attempts, &data)).await;
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
                    let commit_time = crate::replication::pg_time(commit_time_micros);
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
            .store(oldest.map_or(0, |t| t.timestamp_micros().max(1)), Ordering::Relaxed);
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
pub(super) struct SessionState {
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
