//! `cdc run`: check the database, serve the ops endpoints, stand by until this process holds
//! the leader lock, then prepare the slot and stream until a signal (or until the lead is
//! lost), and step down cleanly.

use crate::{
    airtable::{AirtableClient, AirtableConfig},
    config::{validate_catalog, CdcConfig, INBOUND_ORIGIN},
    destination::{airtable::AirtableDestination, Destination},
    inbound::{apply::Applier, webhook, Inbound, InboundConfig},
    leadership::{Holder, Leader, Leadership},
    ops::{self, Ops},
    postgres::{self, publication, slot, ConnInfo},
    replicated::Replicated,
    replication::{Stream, StreamConfig, StreamError},
};
use schema::mapping::Mapping;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::watch;

/// Why the daemon would not start; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("refusing to start: {0}")]
    Refused(String),
    #[error("cannot listen on METRICS_ADDR {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

/// Why a running daemon stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Leading needs what starting did not: the slot (created, or refused as lost).
    #[error(transparent)]
    Start(#[from] StartError),
    /// Nothing more was sent once the lead was lost; a restart stands by again.
    #[error("lost the lead ({0}): stopped sending to Airtable; restart the process to stand by again (a supervisor's restart policy does)")]
    Deposed(String),
}

/// A prepared daemon: checks passed, listener bound, not leading yet.
pub struct Daemon<D: Destination> {
    stream: Stream<D>,
    ops_addr: SocketAddr,
    sampler: AbortOnDrop,
    ops_task: AbortOnDrop,
    inbound: Option<Arc<Inbound>>,
    leadership: Leadership,
    preparation: Preparation,
}

/// What the leader needs to prepare the slot (and the backfills a new slot or mapping needs).
struct Preparation {
    conn: ConnInfo,
    app: String,
    slot: String,
    postgres: schema::postgres::PgConfig,
    replicated: Replicated,
    mirrors_state: bool,
}

/// A background task that ends with its owner, however the owner ends (a crash that drops
/// the daemon's future too).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<D: Destination> Daemon<D> {
    /// The one way to a running daemon (the CLI, the local stack and the tests use it): refuses
    /// an unmigrated database or a mapping that does not fit it, creates a missing
    /// publication, refuses a lost slot, binds METRICS_ADDR. The slot is the leader's to
    /// create ([`Daemon::run_until`]). With `inbound`, the Airtable-to-Postgres side runs
    /// beside the stream, its webhook receiver on the ops listener. `replicated` is what the
    /// destination takes (an Airtable mapping, a Convex mirror). Reads no environment:
    /// everything comes in `config`, `replicated` and the parts given.
    pub async fn build(
        config: &CdcConfig,
        replicated: impl Into<Replicated>,
        destination: D,
        inbound: Option<Arc<Inbound>>,
    ) -> Result<Self, StartError> {
        let replicated = replicated.into();
        // Before anything is measured: metrics recorded without a recorder are lost.
        ops::register_metrics();
        destination.register_metrics();
        let url = config.postgres.redacted_url();
        let connect = |e: &dyn std::fmt::Display| StartError::Connect {
            url: url.clone(),
            reason: e.to_string(),
        };
        let pool = schema::postgres::connect(&config.postgres).await.map_err(|e| connect(&e))?;
        schema::postgres::migrate::ensure_current(&pool)
            .await
            .map_err(|e| StartError::Refused(e.to_string()))?;

        let conn = ConnInfo::from_config(&config.postgres)
            .map_err(|e| StartError::Refused(e.to_string()))?;
        let app = config.postgres.application_name.clone();
        let client = postgres::connect(&conn, &app).await.map_err(|e| connect(&e))?;
        validate_catalog(&replicated, &client).await.map_err(|e| {
            StartError::Refused(format!("the mapping does not fit the database: {e}"))
        })?;
        let sql = |e: postgres::SqlError| connect(&e);
        if publication::tables(&client, &config.publication).await.map_err(sql)?.is_none() {
            match publication::sync(&client, &config.publication, &replicated.published_tables()).await {
                Ok(_) => tracing::info!(publication = %config.publication, "created the publication"),
                Err(e) if e.code() == Some("42501") => return Err(StartError::Refused(format!(
                    "publication {:?} is missing and this role may not create it (it must own the tables): run `cdc publication sync` as the schema owner (a member of coach_migrator)",
                    config.publication
                ))),
                // Another daemon created it meanwhile.
                Err(e) if e.code() == Some("42710") => {}
                Err(e) => return Err(sql(e)),
            }
        }
        if let Some(s) = slot::status(&client, &config.slot).await.map_err(sql)? {
            if s.wal_status.as_deref() == Some("lost") {
                return Err(StartError::Refused(s.problem().unwrap_or_default()));
            }
        }
        pool.close().await;

        let mut stream_config =
            StreamConfig::new(conn.clone(), config.slot.clone(), config.publication.clone());
        stream_config.application_name = app.clone();
        stream_config.status_interval = config.status_interval;
        stream_config.reconnect_max = config.reconnect_max;
        stream_config.skip_origin = replicated.skip_inbound.then(|| INBOUND_ORIGIN.to_owned());
        // The Airtable client's fence when there is one: the leader lock governs its requests.
        let fence = destination.fence().unwrap_or_default();
        let handover_gap = destination.handover_gap();
        let mirrors_state = destination.mirrors_state();
        let stream = Stream::new(stream_config, destination);
        let ops = Ops {
            stream: stream.health(),
            slot_problem: Arc::new(Mutex::new(None)),
            held_deletes: inbound.as_ref().map(|i| i.held_deletes()).unwrap_or_default(),
            fence: fence.clone(),
        };
        let receiver = inbound.clone().map(webhook::router);
        let (ops_addr, ops_task) = ops::serve(config.metrics_addr, ops.clone(), receiver)
            .await
            .map_err(|source| StartError::Listen { addr: config.metrics_addr, source })?;
        let sampler = AbortOnDrop(tokio::spawn(sample_slot(
            client,
            config.slot.clone(),
            config.lag_interval,
            ops,
        )));
        let leadership = Leadership::new(
            config.leadership,
            conn.clone(),
            &app,
            &config.slot,
            Holder::this_process(ops_addr),
            fence,
        )
        .with_handover_gap(handover_gap);
        Ok(Self {
            stream,
            ops_addr,
            sampler,
            ops_task: AbortOnDrop(ops_task),
            inbound,
            leadership,
            preparation: Preparation {
                conn,
                app,
                slot: config.slot.clone(),
                postgres: config.postgres.clone(),
                replicated,
                mirrors_state,
            },
        })
    }

    /// Where /metrics, /healthz and /readyz are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Stands by until this process leads, then streams until `shutdown` turns true (and
    /// steps down) or the lead is lost; returns the destination.
    pub async fn run_until(self, mut shutdown: watch::Receiver<bool>) -> Result<D, RunError> {
        let Self { mut stream, sampler, ops_task, inbound, leadership, preparation, .. } = self;
        let Some(leader) = leadership.acquire(&mut shutdown).await else {
            return Ok(stream.into_destination());
        };
        // On shutdown, long work (a whole listing, a reconcile) stops early so the lock is
        // handed over within its flush.
        let stopping = AbortOnDrop(tokio::spawn({
            let (fence, mut shutdown) = (leadership.fence().clone(), shutdown.clone());
            async move {
                let _ = shutdown.wait_for(|s| *s).await;
                fence.set_stopping();
            }
        }));
        // From here every Airtable request is the leader's: until its predecessor's lease ran
        // out, the fence holds them.
        let lead = async {
            preparation.prepare(&leader).await?;
            stream.destination_mut().start().await.map_err(|e| StartError::Refused(e.message))?;
            // Ends with this future, also when it is dropped mid-way (a crash).
            let inbound = inbound.map(|i| AbortOnDrop(tokio::spawn(i.run(shutdown.clone()))));
            let result = stream.run(shutdown.clone()).await;
            drop(inbound);
            Ok::<_, RunError>(result?)
        };
        let result = tokio::select! {
            r = lead => r,
            // The fence is already shut: dropping the stream sends nothing more.
            reason = leader.hold() => Err(RunError::Deposed(reason)),
        };
        if !matches!(result, Err(RunError::Deposed(_))) {
            // Everything this leader sent was confirmed or stays unconfirmed (it is sent
            // again): its successor need not wait.
            leader.release().await;
        }
        drop((sampler, ops_task, stopping));
        result
    }

    /// The stream's live state (connection, confirmed position, lag, pause).
    pub fn health(&self) -> Arc<crate::replication::StreamHealth> {
        self.stream.health()
    }
}

impl Preparation {
    /// What the leader does before START_REPLICATION: creates a missing slot (queuing the
    /// copy of what exists), refuses a lost one, ends a deposed leader's walsender that still
    /// holds the slot, queues the backfills a changed mapping needs.
    async fn prepare(&self, leader: &Leader) -> Result<(), StartError> {
        let connect = |e: &dyn std::fmt::Display| StartError::Connect {
            url: self.postgres.redacted_url(),
            reason: e.to_string(),
        };
        let client = postgres::connect(&self.conn, &self.app).await.map_err(|e| connect(&e))?;
        let slot_created = match slot::status(&client, &self.slot).await.map_err(|e| connect(&e))? {
            None => {
                let at = slot::create(&client, &self.slot).await.map_err(|e| {
                    StartError::Refused(format!("cannot create the replication slot: {e}"))
                })?;
                tracing::info!(slot = %self.slot, consistent_point = %at, "created the replication slot");
                true
            }
            Some(s) if s.wal_status.as_deref() == Some("lost") => {
                return Err(StartError::Refused(s.problem().unwrap_or_default()))
            }
            Some(s) => {
                if let Some(p) = s.problem() {
                    tracing::warn!(problem = %p, "slot at risk");
                }
                if let (true, Some(pid)) = (s.active, s.active_pid) {
                    // We hold the lock, so whoever streams from the slot was deposed (or is
                    // not a daemon of ours): its session would refuse ours for a minute.
                    tracing::warn!(
                        walsender = pid,
                        epoch = leader.epoch(),
                        "the slot is still in use by a deposed leader's session: ending it"
                    );
                    slot::end_consumer(&client, &self.slot, pid).await.map_err(|e| connect(&e))?;
                }
                false
            }
        };
        if self.mirrors_state {
            // Rows from before the slot, or of what the mapping gained, never stream.
            let pool = schema::postgres::connect(&self.postgres).await.map_err(|e| connect(&e))?;
            crate::backfill::queue::at_start(&pool, &self.replicated, slot_created)
                .await
                .map_err(|e| connect(&e))?;
            pool.close().await;
        }
        Ok(())
    }
}

/// Both Airtable sides of `cdc run`, wired once for the CLI and the local stack: one budget
/// and one client for both directions. Nothing is sent here: the leader reads the base's
/// schema when it starts leading ([`AirtableDestination::check_base_on_lead`]; a refused
/// token stops it, naming the variables), so a standby sends nothing to Airtable.
pub async fn airtable_sides(
    airtable: AirtableConfig,
    inbound_config: InboundConfig,
    mapping: Arc<Mapping>,
    pool: sqlx::PgPool,
) -> Result<(AirtableDestination, Arc<Inbound>), StartError> {
    let budget = Arc::new(airtable.budget());
    let client = Arc::new(
        AirtableClient::new(airtable, budget).map_err(|e| StartError::Refused(e.to_string()))?,
    );
    let applier = Arc::new(
        Applier::new(mapping.clone(), pool.clone())
            .await
            .map_err(|e| StartError::Refused(format!("cannot read the catalog: {e}")))?,
    );
    let inbound = Inbound::new(client.clone(), applier, inbound_config);
    let mut destination = AirtableDestination::new(client, mapping, pool);
    destination.check_base_on_lead(Some(inbound.clone()));
    Ok((destination, inbound))
}

/// Samples the slot: lag, retained WAL, wal_status, safe_wal_size; readiness follows it.
async fn sample_slot(client: tokio_postgres::Client, slot_name: String, every: Duration, ops: Ops) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let problem = match slot::status(&client, &slot_name).await {
            Ok(Some(s)) => {
                metrics::gauge!("cdc_replication_lag_bytes").set(s.lag_bytes.unwrap_or(0) as f64);
                metrics::gauge!("cdc_retained_wal_bytes").set(s.retained_bytes.unwrap_or(0) as f64);
                metrics::gauge!("cdc_safe_wal_size_bytes")
                    .set(s.safe_wal_size.unwrap_or(-1) as f64);
                for status in ["reserved", "extended", "unreserved", "lost"] {
                    let v = if s.wal_status.as_deref() == Some(status) { 1.0 } else { 0.0 };
                    metrics::gauge!("cdc_slot_wal_status", "status" => status).set(v);
                }
                s.problem()
            }
            Ok(None) => {
                Some(format!("replication slot {slot_name} does not exist: run `cdc slot create`"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot sample the slot");
                continue;
            }
        };
        *ops.slot_problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }
}

/// A watch that turns true on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        schema::shutdown::signalled().await;
        tracing::info!("signal received: stopping");
        let _ = tx.send(true);
    });
    rx
}
