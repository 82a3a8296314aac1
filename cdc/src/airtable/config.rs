//! Airtable destination configuration (README, "Environment").

use schema::postgres::ConfigError;
use secrecy::SecretString;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct AirtableConfig {
    /// AIRTABLE_API_URL, no trailing slash; `/v0/...` is appended.
    pub api_url: String,
    /// AIRTABLE_TOKEN (a secret: never printed).
    pub token: SecretString,
    /// AIRTABLE_BASE_ID
    pub base_id: String,
    /// AIRTABLE_BASE_RPS: requests per window per base (Airtable: 5 per second).
    pub base_rps: u32,
    /// AIRTABLE_TOKEN_RPS: requests per window per token (Airtable: 50 per second).
    pub token_rps: u32,
    /// AIRTABLE_FAST_SHARE: slots of each base window bulk work leaves to the users fast
    /// lane while a user event waits (an idle fast lane costs bulk work nothing).
    pub fast_share: u32,
    /// The window, widened by AIRTABLE_RATE_MARGIN_MS (20 ms) so arrival jitter never puts
    /// one request too many into Airtable's own window; every 429 doubles the margin (up to
    /// 250 ms) for the rest of the process.
    pub window: Duration,
    /// After a 429 without a longer Retry-After (Airtable: 30 s).
    pub penalty: Duration,
    /// SYNC_FLUSH_MS: how long changes may wait to be coalesced.
    pub flush_window: Duration,
    /// Rows buffered before a flush is forced (bounds memory).
    pub max_pending_rows: usize,
    /// Attempts per request before its rows are dead-lettered.
    pub max_attempts: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub request_timeout: Duration,
    /// Requests of one table's batch in flight at once.
    pub concurrency: usize,
    /// SYNC_RECONCILE_DELAY_MS: after an unclean stop, nothing is written for this long
    /// (writes the dead process had sent land meanwhile, so none overwrites a newer one),
    /// then a reconcile runs. 5 s: a process that lost the lead sends nothing new (its fence
    /// closes within two lock checks, and its successor waits out the lease first), so only
    /// requests already on the wire can land late, within Airtable's response time.
    pub reconcile_delay: Duration,
    /// SYNC_RECONCILE_INTERVAL_MS: a periodic reconcile as a backstop; 0 disables.
    pub reconcile_interval: Option<Duration>,
    /// SYNC_RECONCILE_SAMPLE: rows per table the periodic reconcile checks (100): it costs
    /// at most ⌈sample / 50⌉ requests per Postgres-owned table, never a whole listing.
    pub reconcile_sample: usize,
    /// AIRTABLE_MONTHLY_CALL_BUDGET: calls a month periodic work is shaped to fit (None: no
    /// cap; Team plans have 100,000 per workspace).
    pub monthly_call_budget: Option<u64>,
    /// SYNC_BACKFILL_CHUNK: rows per backfill chunk; 0 = one window of the request budget
    /// (base_rps × 10 records), so live changes never wait behind more than a window.
    pub backfill_chunk: usize,
}

use schema::env::{number, var};

impl AirtableConfig {
    /// The shared budget these settings describe.
    pub fn budget(&self) -> super::Budget {
        let share = if self.base_rps > self.fast_share { self.fast_share } else { 0 };
        super::Budget::new(self.base_rps, self.token_rps, self.window)
            .with_fast_share(share)
            .with_monthly_calls(self.monthly_call_budget)
            .starting_full()
    }

    pub fn new(
        api_url: impl Into<String>,
        token: impl Into<String>,
        base_id: impl Into<String>,
    ) -> Self {
        Self {
            api_url: api_url.into().trim_end_matches('/').to_owned(),
            token: SecretString::from(token.into()),
            base_id: base_id.into(),
            base_rps: 5,
            token_rps: 50,
            fast_share: 1,
            window: Duration::from_millis(1020),
            penalty: Duration::from_secs(30),
            flush_window: Duration::from_millis(250),
            max_pending_rows: 5_000,
            max_attempts: 10,
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            // One request in flight per base: a second one on the wire when a 429 arrives
            // would land inside the penalty.
            concurrency: 1,
            reconcile_delay: Duration::from_secs(5),
            reconcile_interval: Some(Duration::from_secs(6 * 3600)),
            reconcile_sample: 100,
            monthly_call_budget: None,
            backfill_chunk: 0,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let token = var("AIRTABLE_TOKEN").ok_or(ConfigError::Missing("AIRTABLE_TOKEN"))?;
        let base_id = var("AIRTABLE_BASE_ID").ok_or(ConfigError::Missing("AIRTABLE_BASE_ID"))?;
        let mut c = Self::new(
            var("AIRTABLE_API_URL").unwrap_or_else(|| "https://api.airtable.com".into()),
            token,
            base_id,
        );
        c.base_rps = number("AIRTABLE_BASE_RPS", c.base_rps)?;
        c.token_rps = number("AIRTABLE_TOKEN_RPS", c.token_rps)?;
        c.fast_share = number("AIRTABLE_FAST_SHARE", c.fast_share)?;
        c.window = Duration::from_millis(1000 + number("AIRTABLE_RATE_MARGIN_MS", 20u64)?);
        c.penalty = Duration::from_millis(number("AIRTABLE_PENALTY_MS", 30_000u64)?);
        c.flush_window = Duration::from_millis(number("SYNC_FLUSH_MS", 250u64)?);
        c.max_attempts = number("SYNC_MAX_ATTEMPTS", c.max_attempts)?.max(1);
        c.reconcile_delay = Duration::from_millis(number("SYNC_RECONCILE_DELAY_MS", 5_000u64)?);
        c.reconcile_sample = number("SYNC_RECONCILE_SAMPLE", c.reconcile_sample)?;
        c.monthly_call_budget = match number("AIRTABLE_MONTHLY_CALL_BUDGET", 0u64)? {
            0 => None,
            n => Some(n),
        };
        c.backfill_chunk = number("SYNC_BACKFILL_CHUNK", c.backfill_chunk)?;
        c.reconcile_interval = Some(number("SYNC_RECONCILE_INTERVAL_MS", 6 * 3600 * 1000u64)?)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        Ok(c)
    }
}
