//! How an emulator behaves: who may call it, which bases exist, how strictly it limits,
//! and which faults it injects.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Everything an emulator is started with.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The one token accepted as `Authorization: Bearer <token>`.
    pub token: String,
    /// The token's scopes (whoami reports them; schema writes need `schema.bases:write`).
    pub scopes: Vec<String>,
    /// Bases and tables from a schema file; `None` infers bases, tables and fields from use.
    pub schema: Option<SchemaFile>,
    pub limits: RateLimits,
    pub faults: Faults,
    /// Seed for every random choice fault injection makes, so a failing run can be replayed.
    pub seed: u64,
    /// Idle time after which a list offset expires (LIST_RECORDS_ITERATOR_NOT_AVAILABLE).
    pub iterator_ttl: Duration,
    /// Request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Base of the ping retry schedule (Airtable: 10 s, doubling, 13 retries); scale it down
    /// in tests.
    pub ping_retry_base: Duration,
    pub ping_retries: u32,
    /// A ping that takes longer than this failed (Airtable: 25 s).
    pub ping_timeout: Duration,
    /// Split one transaction's changes over payloads of at most this many records
    /// (Airtable does so for large changes); `None` keeps one payload per transaction.
    pub max_records_per_payload: Option<usize>,
    /// Status of an unknown base/table: 403 (current, documented) or the legacy 404.
    pub legacy_not_found: bool,
    /// Error type for an upsert whose merge fields match more than one record (unconfirmed
    /// in Airtable's docs; 422 with this type by default).
    pub multiple_match_error: &'static str,
}

/// What a sync token is usually given: records and webhooks, the schema read-only.
pub const DEFAULT_SCOPES: [&str; 4] =
    ["data.records:read", "data.records:write", "schema.bases:read", "webhook:manage"];

impl EmulatorConfig {
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            schema: None,
            limits: RateLimits::default(),
            faults: Faults::default(),
            seed: 0,
            iterator_ttl: Duration::from_secs(300),
            max_body_bytes: 2 * 1024 * 1024,
            ping_retry_base: Duration::from_secs(10),
            ping_retries: 13,
            ping_timeout: Duration::from_secs(25),
            max_records_per_payload: None,
            legacy_not_found: false,
            multiple_match_error: "INVALID_VALUE_FOR_COLUMN",
        }
    }

    /// No rate limits: for benchmarks where the emulator must never be the bottleneck.
    pub fn unlimited(mut self) -> Self {
        self.limits = RateLimits::off();
        self
    }
}

/// Airtable's documented limits, enforced as the project rule says: never more than
/// `per_base` requests to one base within any sliding window of `window`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateLimits {
    pub per_base: Option<u32>,
    pub per_token: Option<u32>,
    #[serde(with = "millis")]
    pub window: Duration,
    /// After a 429, everything for that base (or token) gets 429 for this long.
    #[serde(with = "millis")]
    pub penalty: Duration,
    /// Send `Retry-After` (seconds left in the penalty) with 429s.
    pub retry_after_header: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_base: Some(5),
            per_token: Some(50),
            window: Duration::from_secs(1),
            penalty: Duration::from_secs(30),
            retry_after_header: false,
        }
    }
}

impl RateLimits {
    pub fn off() -> Self {
        Self { per_base: None, per_token: None, ..Self::default() }
    }
}

/// Injected faults. Probabilities are per request to /v0; all zero by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// A 500/502/503 (random; 502 with a non-JSON body) instead of doing anything.
    pub error_rate: f64,
    /// Write requests fail with a 5xx before anything is applied.
    pub fail_before_apply: f64,
    /// Write requests are applied, then answered with a 5xx: the write happened but the
    /// response was lost.
    pub fail_after_apply: f64,
    /// The connection is dropped after a write was applied, with no response at all.
    pub drop_after_apply: f64,
    /// The connection is dropped before anything happens.
    pub drop_connection: f64,
    /// A spurious 429 that also starts the base's penalty window (a 429 storm).
    pub rate_limit_rate: f64,
    /// Added latency: a fixed part and a uniformly random part up to `latency_jitter_ms`.
    pub latency_ms: u64,
    pub latency_jitter_ms: u64,
}

/// A schema file: the Meta API's shape, ids optional (generated when missing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemaFile {
    pub bases: Vec<BaseSchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseSchema {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub tables: Vec<TableSchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableSchema {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Name of the primary field; the first field when missing.
    #[serde(default)]
    pub primary_field: Option<String>,
    pub fields: Vec<FieldSchema>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FieldSchema {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Meta API options. For links, `linkedTableId` may instead be `linkedTable` (a name).
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
