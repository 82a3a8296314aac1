//! Running the replication stream against a test database.

use cdc::{
    destination::{MemoryDestination, MemoryLog},
    postgres::{self, ConnInfo},
    replication::{Event, RowChange, Stream, StreamConfig, StreamError, StreamHealth},
};
use schema::postgres::PgConfig;
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{sync::watch, task::JoinHandle};

/// Waits for `check` to hold, polling until `limit`; panics naming `what` otherwise.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `check` to succeed, polling until `limit`; panics with `what` and the last
/// mismatch it reported otherwise.
pub async fn until_ok<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    if let Err(last) = until_ok_quiet(limit, check).await {
        panic!("{what} within {limit:?}; last difference:\n{last}")
    }
}

/// As [`until_ok`], returning the last mismatch instead of panicking (for benches, which
/// report it).
pub async fn until_ok_quiet<F, Fut>(limit: Duration, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A free loopback port (for a process's listener).
pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// A unique slot name for one test (slots are cluster-wide).
pub fn slot_name() -> String {
    format!("s_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Creates `publication` over `tables` and a pgoutput slot.
pub async fn prepare(url: &str, publication: &str, tables: &[&str], slot: &str) {
    let conn = ConnInfo::from_config(&PgConfig::new(url, "test")).expect("conn");
    let client = postgres::connect(&conn, "test").await.expect("connect");
    let wanted: Vec<(String, String)> =
        tables.iter().map(|t| ("public".to_owned(), (*t).to_owned())).collect();
    postgres::publication::sync(&client, publication, &wanted).await.expect("publication");
    postgres::slot::create(&client, slot).await.expect("slot");
}

/// Fast pacing for tests.
pub fn stream_config(url: &str, slot: &str, publication: &str) -> StreamConfig {
    let conn = ConnInfo::from_config(&PgConfig::new(url, "test")).expect("conn");
    let mut c = StreamConfig::new(conn, slot, publication);
    c.status_interval = Duration::from_millis(100);
    c.idle_flush = Duration::from_millis(50);
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(500);
    c.skip_origin = Some(cdc::config::INBOUND_ORIGIN.to_owned());
    c
}

/// The daemon's configuration for tests: its ops listener on a free port, fast pacing.
pub fn daemon_config(url: &str, slot: &str, publication: &str) -> cdc::config::CdcConfig {
    cdc::config::CdcConfig {
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        status_interval: Duration::from_millis(100),
        lag_interval: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        leadership: cdc::leadership::LeadershipConfig {
            poll: Duration::from_millis(100),
            check: Duration::from_millis(200),
            lease: Duration::from_millis(600),
        },
        ..cdc::config::CdcConfig::new(PgConfig::new(url, "cdc-test"), slot, publication)
    }
}

/// A running stream into a memory destination.
pub struct Streaming {
    pub log: Arc<Mutex<MemoryLog>>,
    pub health: Arc<StreamHealth>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<MemoryDestination, StreamError>>,
}

pub fn start(config: StreamConfig, destination: MemoryDestination) -> Streaming {
    let log = destination.log.clone();
    let stream = Stream::new(config, destination);
    let health = stream.health();
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(stream.run(rx));
    Streaming { log, health, shutdown, task }
}

impl Streaming {
    /// Signals shutdown and waits for the stream to finish cleanly.
    pub async fn stop(self) -> Result<MemoryDestination, StreamError> {
        let _ = self.shutdown.send(true);
        self.task.await.expect("stream task")
    }

    pub fn events(&self) -> Vec<Event> {
        self.log.lock().expect("log").events.clone()
    }

    pub fn changes(&self) -> Vec<RowChange> {
        self.events()
            .into_iter()
            .filter_map(|e| if let Event::Change(c) = e { Some(c) } else { None })
            .collect()
    }

    pub fn commits(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, Event::Commit { .. })).count()
    }

    pub async fn wait_for_changes(&self, n: usize) {
        wait_until(Duration::from_secs(20), &format!("{n} changes"), || async {
            self.changes().len() >= n
        })
        .await;
    }
}

/// The slot's confirmed_flush_lsn minus a reference LSN (>= 0 means confirmed past it).
pub async fn confirmed_past(pool: &sqlx::PgPool, slot: &str, lsn: &str) -> bool {
    slot_says(
        pool,
        "SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
        slot,
        lsn,
    )
    .await
}

/// A yes/no question about slot `$1` with argument `$2` (false when it cannot be asked).
pub async fn slot_says(pool: &sqlx::PgPool, sql: &str, slot: &str, arg: &str) -> bool {
    sqlx::query_scalar::<_, bool>(sql)
        .bind(slot)
        .bind(arg)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

pub async fn current_wal_lsn(pool: &sqlx::PgPool) -> String {
    // The insert position: with synchronous_commit off (test clusters) the write position
    // can trail a commit that has already happened.
    sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(pool)
        .await
        .expect("lsn")
}
