//! The daemon's configuration (README, "Environment").

use schema::postgres::{ConfigError, PgConfig};
use std::{net::SocketAddr, time::Duration};

/// The replication origin inbound writes run under; the outbound stream skips it.
pub const INBOUND_ORIGIN: &str = "coach_inbound";

#[derive(Debug, Clone)]
pub struct CdcConfig {
    pub postgres: PgConfig,
    /// CDC_SLOT
    pub slot: String,
    /// CDC_PUBLICATION
    pub publication: String,
    /// METRICS_ADDR: /metrics, /healthz, /readyz (and later /webhooks/airtable).
    pub metrics_addr: SocketAddr,
    /// CDC_STATUS_INTERVAL_MS: how often the position is reported to the server.
    pub status_interval: Duration,
    /// CDC_LAG_INTERVAL_MS: how often slot lag and WAL retention are sampled.
    pub lag_interval: Duration,
    /// CDC_RECONNECT_MAX_MS: the longest wait between replication sessions (the backoff's
    /// cap; also how soon a paused destination is tried again at worst).
    pub reconnect_max: Duration,
    /// SYNC_LEADER_*: how standbys wait for the lead and the leader keeps it.
    pub leadership: crate::leadership::LeadershipConfig,
}

pub(crate) use schema::env::{millis, var};

impl CdcConfig {
    /// The defaults the environment overrides.
    pub fn new(
        postgres: PgConfig,
        slot: impl Into<String>,
        publication: impl Into<String>,
    ) -> Self {
        Self {
            postgres,
            slot: slot.into(),
            publication: publication.into(),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            status_interval: Duration::from_secs(1),
            lag_interval: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(30),
            leadership: Default::default(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let slot = var("CDC_SLOT").unwrap_or_else(|| "coach_cdc".into());
        if !crate::postgres::slot::valid_name(&slot) {
            return Err(ConfigError::Invalid {
                var: "CDC_SLOT",
                reason: format!("{slot:?}: use lowercase letters, digits and _ (at most 63)"),
            });
        }
        let metrics_addr = match var("METRICS_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 9464)),
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                var: "METRICS_ADDR",
                reason: format!("expected host:port, got {v:?}"),
            })?,
        };
        Ok(Self {
            postgres: PgConfig::from_env("cdc")?,
            slot,
            publication: var("CDC_PUBLICATION").unwrap_or_else(|| "coach_pub".into()),
            metrics_addr,
            status_interval: millis("CDC_STATUS_INTERVAL_MS", 1000)?,
            lag_interval: millis("CDC_LAG_INTERVAL_MS", 5000)?,
            reconnect_max: millis("CDC_RECONNECT_MAX_MS", 30_000)?,
            leadership: crate::leadership::LeadershipConfig::from_env()?,
        })
    }
}

/// The mapping: SYNC_MAPPING when set, else the one shipped in schema/mapping.toml.
pub fn load_mapping() -> Result<schema::mapping::Mapping, String> {
    match var("SYNC_MAPPING") {
        None => schema::mapping::Mapping::default_mapping()
            .map_err(|e| format!("the built-in mapping: {e}")),
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("SYNC_MAPPING {path}: {e}"))?;
            schema::mapping::Mapping::parse(&text).map_err(|e| format!("SYNC_MAPPING {path}: {e}"))
        }
    }
}

/// The Convex mirror: CONVEX_MAPPING when set, else the one shipped in schema/convex.toml.
pub fn load_mirror() -> Result<schema::mirror::Mirror, String> {
    match var("CONVEX_MAPPING") {
        None => schema::mirror::Mirror::default_mirror()
            .map_err(|e| format!("the built-in mirror: {e}")),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("CONVEX_MAPPING {path}: {e}"))?;
            schema::mirror::Mirror::parse(&text).map_err(|e| format!("CONVEX_MAPPING {path}: {e}"))
        }
    }
}

/// Checks every replicated column exists in Postgres (the catalog, not just the registry),
/// and that the tables come parents first (a foreign key to a table later in the order
/// would make a child's write land before its parent's).
pub async fn validate_catalog(
    replicated: &crate::replicated::Replicated,
    client: &tokio_postgres::Client,
) -> Result<(), String> {
    let mut problems = Vec::new();
    let names: Vec<&str> = replicated.columns.iter().map(|(t, _)| t.as_str()).collect();
    for (i, (table, columns)) in replicated.columns.iter().enumerate() {
        let rows = client
            .query("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1", &[table])
            .await
            .map_err(|e| e.to_string())?;
        let have: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if have.is_empty() {
            problems.push(format!("table {table} does not exist in Postgres"));
        }
        for c in columns.iter().filter(|c| !have.contains(c)) {
            problems.push(format!("column {table}.{c} does not exist in Postgres"));
        }
        let parents = client
            .query(
                "SELECT DISTINCT confrelid::regclass::text FROM pg_constraint
                  WHERE contype = 'f' AND conrelid = to_regclass($1) AND confrelid <> conrelid",
                &[&format!("public.{}", crate::postgres::quote_ident(table))],
            )
            .await
            .map_err(|e| e.to_string())?;
        for p in rows_text(&parents) {
            if names.iter().position(|n| *n == p).is_some_and(|at| at > i) {
                problems
                    .push(format!("{table} references {p}, which comes after it: list {p} first"));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn rows_text(rows: &[tokio_postgres::Row]) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(0).trim_matches('"').to_owned()).collect()
}
