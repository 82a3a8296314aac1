//! Inbound: Airtable into Postgres, for every table and field Airtable owns.
//!
//! - [`webhook`]: two webhooks per base (users, the rest), MAC-verified pings on
//!   METRICS_ADDR, payloads read from the stored cursor; the cursor commits with the changes
//!   it covers.
//! - [`poll`]: the safety poll (records modified since the checkpoint, with an overlap) and
//!   the full reconcile that catches deletions nothing reported.
//! - [`read_through`]: a login for an unknown email asks (NOTIFY); the users lane answers.
//! - [`apply`]: the one place changes reach Postgres, under the inbound replication origin.
//!
//! Users have a fast lane: their requests use the budget's reserved share, their task never
//! waits behind bulk work (polls, reconciles), and their payload changes are read first.

pub mod apply;
mod parity;
pub mod payload;
pub mod poll;
pub mod read_through;
mod stamp;
pub mod values;
pub mod webhook;

use crate::airtable::{AirtableClient, Lane};
use crate::config::millis;
use apply::{Applier, Upsert};
use payload::BaseSchema;
use schema::mapping::TableId;
use schema::{mapping::MappedTable, postgres::ConfigError};
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tokio::sync::{watch, Notify, RwLock};

/// Inbound timing, from the environment.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// WEBHOOK_PUBLIC_URL: where Airtable pings; unset = no pings, payloads are polled.
    pub webhook_public_url: Option<String>,
    /// SYNC_WEBHOOKS=off: no webhook at all, polling only.
    pub webhooks: bool,
    /// SYNC_WEBHOOK_POLL_MS: how often payloads are read without a ping (default 5 s
    /// without a public URL, 60 s with one: pings can be lost).
    pub webhook_poll: Duration,
    /// SYNC_WEBHOOK_BASE_GAP_MS: the least time between two reads of the `base` webhook's
    /// payloads (every outbound write raises one there; the users webhook has no gap).
    pub base_webhook_gap: Duration,
    /// SYNC_WEBHOOK_BASE_GAP_MAX_MS: how far the gap grows while reads find only echoes of
    /// outbound writes (30 s).
    pub base_webhook_gap_max: Duration,
    /// SYNC_POLL_USERS_MS (60 s) and SYNC_POLL_MS (120 s, the other tables).
    pub users_poll: Duration,
    pub poll: Duration,
    /// SYNC_POLL_USERS_HEALTHY_MS (1 h), SYNC_POLL_HEALTHY_MS (6 h),
    /// SYNC_INBOUND_RECONCILE_HEALTHY_MS (24 h): the same backstops while the webhooks are
    /// healthy (they only catch what a broken webhook would miss).
    pub users_poll_healthy: Duration,
    pub poll_healthy: Duration,
    pub reconcile_healthy: Duration,
    /// SYNC_POLL_OVERLAP_MS: how far before the checkpoint a poll looks (clock skew).
    pub overlap: Duration,
    /// SYNC_INBOUND_RECONCILE_MS: full reconcile (deletions nothing reported); 0 = never.
    pub reconcile: Option<Duration>,
    /// SYNC_READ_THROUGH_MISS_MS: how long an email Airtable does not have is not asked
    /// for again (5 s); forgotten at once when any users change arrives.
    pub negative_cache: Duration,
    /// SYNC_INBOUND_SETTLE_MS (1.5 s) / SYNC_INBOUND_USERS_SETTLE_MS (0): how long a
    /// webhook must be quiet after a ping before its payloads are read (bulk tables / users).
    pub settle: Duration,
    pub users_settle: Duration,
    /// SYNC_DELETE_GUARD: how much of a table one reconcile may delete before its inferred
    /// deletions are held for an operator (more than 10 rows and more than 5 %); None = off.
    pub delete_guard: Option<apply::DeleteGuard>,
    /// SYNC_VERIFY_INTERVAL_MS: the sampled parity check (daily); 0 = never.
    pub verify_interval: Option<Duration>,
    /// SYNC_VERIFY_SAMPLE: rows per table whose fields it compares (50).
    pub verify_sample: usize,
    /// SYNC_VERIFY_SETTLE_MS: how long before drift is looked at again (60 s).
    pub verify_settle: Duration,
    /// SYNC_STAMP_DELAY_MS: how long a new record's pg id may wait for nine more to share
    /// its write (10 s).
    pub stamp_delay: Duration,
}

impl InboundConfig {
    pub fn new(webhook_public_url: Option<String>) -> Self {
        let webhook_poll = Duration::from_secs(if webhook_public_url.is_some() { 60 } else { 5 });
        Self {
            webhook_public_url,
            webhooks: true,
            webhook_poll,
            base_webhook_gap: Duration::from_secs(5),
            base_webhook_gap_max: Duration::from_secs(30),
            users_poll: Duration::from_secs(60),
            poll: Duration::from_secs(120),
            overlap: Duration::from_secs(120),
            users_poll_healthy: Duration::from_secs(3600),
            poll_healthy: Duration::from_secs(6 * 3600),
            reconcile_healthy: Duration::from_secs(24 * 3600),
            reconcile: Some(Duration::from_secs(3600)),
            negative_cache: Duration::from_secs(5),
            delete_guard: Some(apply::DeleteGuard::default()),
            settle: Duration::from_millis(1500),
            users_settle: Duration::ZERO,
            verify_interval: Some(parity::DEFAULT_INTERVAL),
            verify_sample: 50,
            verify_settle: Duration::from_secs(60),
            stamp_delay: Duration::from_secs(10),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        use crate::config::var;
        let ms = |n: &'static str, d: Duration| millis(n, d.as_millis() as u64);
        let url = var("WEBHOOK_PUBLIC_URL");
        if let Some(u) = &url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    var: "WEBHOOK_PUBLIC_URL",
                    reason: format!("{u:?} is not an http(s) URL"),
                });
            }
        }
        let mut c = Self::new(url);
        c.webhooks = !matches!(var("SYNC_WEBHOOKS").as_deref(), Some("off" | "false" | "0"));
        c.webhook_poll = ms("SYNC_WEBHOOK_POLL_MS", c.webhook_poll)?;
        c.base_webhook_gap = ms("SYNC_WEBHOOK_BASE_GAP_MS", c.base_webhook_gap)?;
        c.base_webhook_gap_max = ms("SYNC_WEBHOOK_BASE_GAP_MAX_MS", c.base_webhook_gap_max)?;
        c.users_poll = ms("SYNC_POLL_USERS_MS", c.users_poll)?;
        c.poll = ms("SYNC_POLL_MS", c.poll)?;
        c.overlap = ms("SYNC_POLL_OVERLAP_MS", c.overlap)?;
        c.users_poll_healthy = ms("SYNC_POLL_USERS_HEALTHY_MS", c.users_poll_healthy)?;
        c.poll_healthy = ms("SYNC_POLL_HEALTHY_MS", c.poll_healthy)?;
        c.reconcile_healthy = ms("SYNC_INBOUND_RECONCILE_HEALTHY_MS", c.reconcile_healthy)?;
        c.reconcile = Some(ms("SYNC_INBOUND_RECONCILE_MS", Duration::from_secs(3600))?)
            .filter(|d| !d.is_zero());
        c.verify_interval =
            Some(ms("SYNC_VERIFY_INTERVAL_MS", parity::DEFAULT_INTERVAL)?).filter(|d| !d.is_zero());
        c.verify_sample = schema::env::number("SYNC_VERIFY_SAMPLE", c.verify_sample)?;
        c.verify_settle = ms("SYNC_VERIFY_SETTLE_MS", c.verify_settle)?;
        c.negative_cache = ms("SYNC_READ_THROUGH_MISS_MS", c.negative_cache)?;
        c.settle = ms("SYNC_INBOUND_SETTLE_MS", c.settle)?;
        c.users_settle = ms("SYNC_INBOUND_USERS_SETTLE_MS", c.users_settle)?;
        c.stamp_delay = ms("SYNC_STAMP_DELAY_MS", c.stamp_delay)?;
        if let Some(g) = var("SYNC_DELETE_GUARD") {
            c.delete_guard = apply::DeleteGuard::parse(&g)
                .map_err(|reason| ConfigError::Invalid { var: "SYNC_DELETE_GUARD", reason })?;
        }
        Ok(c)
    }
}

/// The inbound side of the daemon.
pub struct Inbound {
    client: Arc<AirtableClient>,
    applier: Arc<Applier>,
    config: InboundConfig,
    schema: RwLock<BaseSchema>,
    hooks: RwLock<std::collections::HashMap<webhook::HookKind, webhook::Hook>>,
    pings: webhook::Pings,
    /// A verified ping arrived: read that hook's payloads now.
    pinged_users: Notify,
    pinged_base: Notify,
    /// The hook was (re)created, so payloads may be lost: reconcile everything (each table
    /// whose last reconcile listing started before `reconcile_asked`).
    reconcile_due: Notify,
    reconcile_asked: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// When each table's last reconcile listing started.
    reconciled: std::sync::Mutex<std::collections::HashMap<TableId, tokio::time::Instant>>,
    /// Bumped when a users change arrives (a users ping, users payloads or poll results):
    /// the read-through's cached misses from before it no longer hold.
    users_changed: std::sync::atomic::AtomicU64,
    /// Inferred deletions held for an operator (`/readyz` warns while there are any).
    held_deletes: Arc<std::sync::atomic::AtomicI64>,
    /// Set by the webhook watch; false until its first check.
    webhooks_healthy: std::sync::atomic::AtomicBool,
    /// The webhooks' health changed: the backstops' deadlines move (full speed when they
    /// broke, the healthy intervals when they recovered).
    backstops_due: Notify,
    /// Stamps were queued.
    stamp_due: Notify,
}

impl Inbound {
    pub fn new(
        client: Arc<AirtableClient>,
        applier: Arc<Applier>,
        config: InboundConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            applier,
            config,
            schema: RwLock::new(BaseSchema::default()),
            hooks: RwLock::new(Default::default()),
            pings: webhook::Pings::default(),
            pinged_users: Notify::new(),
            pinged_base: Notify::new(),
            reconcile_due: Notify::new(),
            reconcile_asked: Default::default(),
            reconciled: Default::default(),
            users_changed: Default::default(),
            held_deletes: Default::default(),
            webhooks_healthy: Default::default(),
            backstops_due: Notify::new(),
            stamp_due: Notify::new(),
        })
    }

    pub fn config(&self) -> &InboundConfig {
        &self.config
    }

    fn pinged(&self, kind: webhook::HookKind) -> &Notify {
        match kind {
            webhook::HookKind::Users => &self.pinged_users,
            webhook::HookKind::Base => &self.pinged_base,
        }
    }

    /// Whether both webhooks were healthy at the last check (then the backstops slow down).
    fn webhooks_healthy(&self) -> bool {
        self.webhooks_healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_webhooks_healthy(&self, healthy: bool) {
        let was = self.webhooks_healthy.swap(healthy, std::sync::atomic::Ordering::Relaxed);
        if was != healthy {
            // The polls' deadlines move: sooner when the webhooks broke, later when healthy.
            self.backstops_due.notify_waiters();
            tracing::info!(
                healthy,
                "webhook health changed: the safety polls run at their {} intervals",
                if healthy { "healthy" } else { "full" }
            );
        }
        metrics::gauge!("inbound_webhooks_healthy").set(if healthy { 1.0 } else { 0.0 });
    }

    /// How often `table` is polled now: slower while the webhooks are healthy, stretched to
    /// fit the monthly call budget.
    fn poll_interval(&self, users: bool) -> Duration {
        let base = match (users, self.webhooks_healthy()) {
            (true, false) => self.config.users_poll,
            (true, true) => self.config.users_poll.max(self.config.users_poll_healthy),
            (false, false) => self.config.poll,
            (false, true) => self.config.poll.max(self.config.poll_healthy),
        };
        self.shape(base)
    }

    /// How often everything is reconciled now: slower while the webhooks are healthy,
    /// stretched to fit the monthly call budget.
    fn reconcile_interval(&self) -> Option<Duration> {
        let r = self.config.reconcile?;
        Some(self.shape(if self.webhooks_healthy() {
            r.max(self.config.reconcile_healthy)
        } else {
            r
        }))
    }

    /// A periodic interval stretched to fit AIRTABLE_MONTHLY_CALL_BUDGET.
    fn shape(&self, interval: Duration) -> Duration {
        crate::airtable::calls::stretched(interval, self.client.budget().calls())
    }

    /// Asks for a reconcile of every table (a hook was just made: payloads before it are
    /// lost). A table listed whole after this moment needs none.
    fn ask_reconcile(&self) {
        *self.reconcile_asked.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(tokio::time::Instant::now());
        self.reconcile_due.notify_one();
    }

    /// A reconcile listing of `table` starts.
    fn reconciling(&self, table: TableId) {
        self.reconciled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table, tokio::time::Instant::now());
    }

    /// Whether `table` was listed whole since the last reconcile request.
    fn reconciled_since_asked(&self, table: TableId) -> bool {
        let asked = *self.reconcile_asked.lock().unwrap_or_else(|e| e.into_inner());
        let done = self.reconciled.lock().unwrap_or_else(|e| e.into_inner()).get(&table).copied();
        matches!((asked, done), (Some(a), Some(d)) if d >= a)
    }

    /// The count of held deletions, shared with readiness.
    pub fn held_deletes(&self) -> Arc<std::sync::atomic::AtomicI64> {
        self.held_deletes.clone()
    }

    /// A users change arrived.
    fn users_changed(&self) {
        self.users_changed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn users_generation(&self) -> u64 {
        self.users_changed.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn users(&self) -> Option<TableId> {
        self.applier.mapping().table_id("users")
    }

    fn lane(&self, table: TableId) -> Lane {
        if Some(table) == self.users() {
            Lane::Fast
        } else {
            Lane::Bulk
        }
    }

    /// Indices of the mapped tables Airtable owns anything of, parents first.
    fn inbound_tables(&self) -> Vec<TableId> {
        let m = self.applier.mapping();
        m.table_ids().filter(|i| m.tables[*i].inbound().next().is_some()).collect()
    }

    /// The fields to read of a table's records: the Airtable-owned ones and the merge field.
    fn read_fields(&self, t: &MappedTable) -> Vec<String> {
        let mut f: Vec<String> = t.inbound().map(|c| c.field.field.clone()).collect();
        f.push(self.applier.mapping().merge_field.clone());
        f
    }

    /// Takes the base's schema as read at start (one Meta API read serves both directions).
    pub async fn set_schema(&self, meta: &crate::airtable::meta::BaseMeta) {
        *self.schema.write().await = BaseSchema::from_meta(meta, self.applier.mapping());
    }

    async fn refresh_schema(&self) -> Result<(), crate::airtable::AirtableError> {
        let meta = self.client.tables(Lane::Fast).await?;
        // Under the mapping's names: a field renamed since start keeps its id.
        let meta = self.client.rebound(&crate::airtable::meta::BaseMeta::from_json(&meta));
        self.set_schema(&meta).await;
        Ok(())
    }

    /// Records as the records API returns them, into complete upserts.
    fn upserts(&self, table: TableId, records: &[Value]) -> Vec<Upsert> {
        records
            .iter()
            .filter_map(|r| {
                Some(Upsert {
                    table,
                    record_id: r["id"].as_str()?.to_owned(),
                    fields: r["fields"].as_object().cloned().unwrap_or_default(),
                    complete: true,
                    changed_at: None,
                })
            })
            .collect()
    }

    /// Adds the parents that `upserts` link to and Postgres lacks, fetched from Airtable,
    /// so no link is dropped (a link to a record Airtable no longer has is parked at apply).
    async fn with_parents(&self, mut upserts: Vec<Upsert>) -> Result<Vec<Upsert>, InboundError> {
        for _ in 0..3 {
            let missing = self.applier.missing_links(&upserts).await?;
            if missing.is_empty() {
                break;
            }
            for (ti, ids) in missing {
                let t = &self.applier.mapping().tables[ti];
                if t.inbound().next().is_none() {
                    continue;
                }
                let records = self
                    .client
                    .records_by_id(self.lane(ti), &t.airtable, &ids, &self.read_fields(t))
                    .await?;
                let mut parents = self.upserts(ti, &records);
                parents.append(&mut upserts);
                upserts = parents;
            }
        }
        Ok(upserts)
    }

    /// Runs every inbound task until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        if self.schema.read().await.is_empty() {
            if let Err(e) = self.refresh_schema().await {
                tracing::warn!(error = %e, "cannot read the Airtable schema yet; webhooks wait for it");
            }
        }
        let (lookups_tx, lookups_rx) = tokio::sync::mpsc::channel(256);
        let tasks = vec![
            tokio::spawn(self.clone().webhook_task(webhook::HookKind::Users, shutdown.clone())),
            tokio::spawn(self.clone().webhook_task(webhook::HookKind::Base, shutdown.clone())),
            tokio::spawn(self.clone().watch_task(shutdown.clone())),
            tokio::spawn(self.clone().users_task(lookups_rx, shutdown.clone())),
            tokio::spawn(self.clone().bulk_task(shutdown.clone())),
            tokio::spawn(self.clone().parity_task(shutdown.clone())),
            tokio::spawn(self.clone().stamp_task(shutdown.clone())),
            tokio::spawn(self.clone().forwarded_pings(shutdown.clone())),
            tokio::spawn(read_through::listen(
                self.applier.pool().clone(),
                lookups_tx,
                shutdown.clone(),
            )),
        ];
        let mut s = shutdown;
        let _ = s.wait_for(|stop| *stop).await;
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Why an inbound step failed (the task that ran it logs, counts and retries it).
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error(transparent)]
    Airtable(#[from] crate::airtable::AirtableError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error("postgres: {0}")]
    Db(#[from] sqlx::Error),
    /// Airtable answered with something the daemon cannot use (a base without the users
    /// table, a webhook without a secret).
    #[error("{0}")]
    Base(String),
}

/// Resolves when shutdown is asked for (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Waits `d`, or returns false when shutdown comes first.
async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stopped(shutdown) => false,
    }
}
