//! The daemon's inbound side against a test database and the emulator: the webhook
//! receiver on a free port (its URL is the hook's notification URL), every inbound task
//! running, and helpers to watch rows arrive.

use crate::airtable::{airtable_config, mapping};
use airtable_emulator::Emulator;
use cdc::{
    airtable::{AirtableClient, AirtableConfig, Budget},
    inbound::{apply::Applier, webhook, Inbound, InboundConfig},
};
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

pub struct Receiving {
    pub inbound: Arc<Inbound>,
    /// The receiver's base URL (POST {url}/webhooks/airtable).
    pub url: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    server: JoinHandle<()>,
}

/// Test pacing: pings drive the webhook (its timer is long), polls are slow unless `tweak`
/// speeds them up, no periodic reconcile.
pub async fn start_inbound(
    url: &str,
    e: &Emulator,
    tweak: impl FnOnce(&mut InboundConfig),
) -> Receiving {
    let at = airtable_config(e);
    let budget = Arc::new(at.budget());
    start_inbound_sharing(url, at, budget, tweak).await
}

/// As [`start_inbound`], with `airtable` settings and a `budget` shared with the outbound
/// side (as in `cdc run`).
pub async fn start_inbound_sharing(
    url: &str,
    airtable: AirtableConfig,
    budget: Arc<Budget>,
    tweak: impl FnOnce(&mut InboundConfig),
) -> Receiving {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = format!("http://{addr}");
    let mut config = InboundConfig::new(Some(format!("{base}/webhooks/airtable")));
    config.webhook_poll = Duration::from_secs(3600);
    config.base_webhook_gap = Duration::from_millis(50);
    config.base_webhook_gap_max = Duration::from_millis(400);
    config.users_poll = Duration::from_secs(3600);
    config.poll = Duration::from_secs(3600);
    config.overlap = Duration::from_secs(5);
    config.reconcile = None;
    config.stamp_delay = Duration::from_millis(100);
    tweak(&mut config);
    let client = Arc::new(AirtableClient::new(airtable, budget).expect("client"));
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await.expect("pool");
    let applier = Arc::new(Applier::new(mapping(), pool).await.expect("applier"));
    let inbound = Inbound::new(client, applier, config);
    let router = webhook::router(inbound.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(inbound.clone().run(rx));
    Receiving { inbound, url: base, shutdown, task, server }
}

impl Receiving {
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        self.server.abort();
    }
}

/// The pg id a record maps to, if any.
pub async fn pg_id(pool: &sqlx::PgPool, table: &str, record: &str) -> Option<Uuid> {
    sqlx::query_scalar(
        "SELECT pg_id FROM airtable_id_map WHERE table_name = $1 AND airtable_record_id = $2",
    )
    .bind(table)
    .bind(record)
    .fetch_optional(pool)
    .await
    .expect("id map")
}

/// The id of webhook `kind` (`users` or `base`) once it exists.
pub async fn hook_id(pool: &sqlx::PgPool, kind: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT value->>'id' FROM sync_checkpoint WHERE name = 'inbound.webhook.' || $1",
    )
    .bind(kind)
    .fetch_optional(pool)
    .await
    .expect("checkpoint")
}

/// The MAC key of hook `kind` (`users` or `base`), as the daemon stored it.
pub async fn hook_key(pool: &sqlx::PgPool, kind: &str) -> Vec<u8> {
    use base64::Engine;
    let secret: String = sqlx::query_scalar(
        "SELECT value->>'secret' FROM sync_checkpoint WHERE name = 'inbound.webhook.' || $1",
    )
    .bind(kind)
    .fetch_one(pool)
    .await
    .expect("secret");
    base64::engine::general_purpose::STANDARD.decode(secret).expect("base64")
}
