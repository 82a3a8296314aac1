//! The Convex mirror in tests: the emulator holding the mirror's tables, the daemon wired as
//! `cdc run --destination convex` wires it (in process, or as the binary), and an exact
//! comparison of Postgres with the emulator computed on its own (from `to_jsonb`, not from
//! the daemon's decoder).

use cdc::{
    convex::{ConvexClient, ConvexConfig},
    destination::convex::ConvexDestination,
    replication::StreamHealth,
    run::{Daemon, RunError},
};
use chrono::{DateTime, SecondsFormat, Utc};
use convex_emulator::{Emulator, EmulatorConfig};
use schema::mirror::Mirror;
use serde_json::{Map, Value};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};

pub fn mirror() -> Arc<Mirror> {
    Arc::new(Mirror::default_mirror().expect("the shipped mirror"))
}

/// An emulator with the mirror's tables.
pub async fn emulator(mirror: &Mirror, keep_history: bool) -> Emulator {
    let tables: Vec<&str> = mirror.tables.iter().map(|t| t.convex.as_str()).collect();
    let mut config = EmulatorConfig::new(&tables);
    config.keep_history = keep_history;
    Emulator::start(config, "127.0.0.1:0".parse().expect("addr")).await.expect("emulator")
}

/// Fast pacing for tests.
pub fn convex_config(e: &Emulator) -> ConvexConfig {
    let mut c = ConvexConfig::new(e.url(), e.deploy_key());
    c.flush_window = Duration::from_millis(50);
    c.backoff_min = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(100);
    c.max_attempts = 30;
    c.backfill_rps = 0;
    c.parity_interval = None;
    c
}

/// The mirror's daemon, running in this process.
pub struct Mirroring {
    pub health: Arc<StreamHealth>,
    pub ops: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    pub task: JoinHandle<Result<ConvexDestination, RunError>>,
}

pub async fn start_mirror(
    url: &str,
    slot: &str,
    config: ConvexConfig,
    mirror: Arc<Mirror>,
) -> Mirroring {
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await.expect("pool");
    let client = Arc::new(ConvexClient::new(config).expect("client"));
    let destination = ConvexDestination::new(client, mirror.clone(), pool);
    let config = crate::cdc::daemon_config(url, slot, &format!("{slot}_pub"));
    let daemon = Daemon::build(&config, mirror.as_ref(), destination, None)
        .await
        .expect("the daemon builds");
    let (health, ops) = (daemon.health(), daemon.ops_addr());
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(daemon.run_until(rx));
    crate::cdc::wait_until(Duration::from_secs(30), "the mirror leads and streams", || async {
        health.connected.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    Mirroring { health, ops, shutdown, task }
}

impl Mirroring {
    pub async fn stop(self) -> ConvexDestination {
        let _ = self.shutdown.send(true);
        match self.task.await.expect("join") {
            Ok(d) => d,
            Err(e) => panic!("the mirror failed: {e}"),
        }
    }
}

/// `cdc run --destination convex` (binary `bin`) against `e`.
pub fn convex_run(
    bin: &std::path::Path,
    database_url: &str,
    slot: &str,
    metrics_port: u16,
    e: &Emulator,
) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.args(["run", "--destination", "convex"])
        .env("DATABASE_URL", database_url)
        .env("CDC_SLOT", slot)
        .env("CDC_PUBLICATION", format!("{slot}_pub"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("CONVEX_URL", e.url())
        .env("CONVEX_DEPLOY_KEY", e.deploy_key())
        .env("CONVEX_FLUSH_MS", "50")
        .env("SYNC_LEADER_POLL_MS", "100")
        .env("SYNC_LEADER_CHECK_MS", "200")
        .env("SYNC_LEADER_LEASE_MS", "600")
        .env("RUST_LOG", "warn");
    c
}

/// A value in one comparable form: timestamps to UTC milliseconds (Postgres's `to_jsonb`
/// keeps microseconds and offsets; the mirror carries milliseconds), numbers as floats.
fn normal(v: &Value) -> Value {
    match v {
        Value::String(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => {
                let ms = DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis())
                    .unwrap_or_default();
                Value::String(ms.to_rfc3339_opts(SecondsFormat::Millis, true))
            }
            Err(_) => v.clone(),
        },
        Value::Number(n) => n.as_f64().map_or_else(|| v.clone(), Value::from),
        Value::Array(a) => Value::Array(a.iter().map(normal).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normal(v))).collect()),
        other => other.clone(),
    }
}

fn comparable(m: &Map<String, Value>) -> BTreeMap<String, Value> {
    m.iter().map(|(k, v)| (k.clone(), normal(v))).collect()
}

/// Postgres and the emulator hold the same rows, exactly: every row a live document with
/// its mirrored columns, no live document without a row.
pub async fn compare(e: &Emulator, pool: &sqlx::PgPool, mirror: &Mirror) -> Result<(), String> {
    let mut problems = Vec::new();
    for t in &mirror.tables {
        let sql = format!("SELECT id::text, to_jsonb(t) FROM {} t", t.table.name);
        let rows: Vec<(String, Value)> =
            sqlx::query_as(&sql).fetch_all(pool).await.map_err(|e| e.to_string())?;
        let want: BTreeMap<String, BTreeMap<String, Value>> = rows
            .into_iter()
            .map(|(id, row)| {
                let row = row.as_object().cloned().unwrap_or_default();
                let doc: Map<String, Value> = t
                    .columns
                    .iter()
                    .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Value::Null)))
                    .collect();
                (id, comparable(&doc))
            })
            .collect();
        let docs = e.admin().table(&t.convex).unwrap_or_default();
        let have: BTreeMap<String, BTreeMap<String, Value>> = docs
            .into_iter()
            .filter(|d| !d.deleted)
            .map(|d| (d.id, comparable(d.doc.as_object().unwrap_or(&Map::new()))))
            .collect();
        for (id, doc) in &want {
            match have.get(id) {
                None => problems.push(format!("{}: {id} missing in Convex", t.table.name)),
                Some(h) if h != doc => problems.push(format!(
                    "{}: {id} differs:\n  postgres {doc:?}\n  convex   {h:?}",
                    t.table.name
                )),
                Some(_) => {}
            }
        }
        for id in have.keys().filter(|id| !want.contains_key(*id)) {
            problems.push(format!("{}: {id} in Convex, not in Postgres", t.table.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
