//! Counters tests assert on: requests by kind and status, 429s, requests sent during a
//! penalty, the largest write, and a bounded log of recent requests.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

pub const LOG_CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
    pub kind: &'static str,
    pub base: Option<String>,
    /// The table of a records request, as the request named it.
    pub table: Option<String>,
    /// The webhook of a payload read.
    pub hook: Option<String>,
    pub status: u16,
    pub records: usize,
    /// The sender's `x-coach-leader-epoch` header (which daemon leader sent it), if any.
    pub epoch: Option<i64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// "kind status" -> count, e.g. "upsert 200".
    pub requests: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub rate_limited: u64,
    /// Requests that arrived while their base or token was in its 429 penalty.
    pub requests_during_penalty: u64,
    pub max_records_per_write: usize,
    pub records_written: u64,
    pub pings_sent: u64,
    pub pings_failed: u64,
    pub faults_injected: u64,
    #[serde(skip)]
    pub log: VecDeque<LoggedRequest>,
}

impl Stats {
    pub fn record(&mut self, entry: LoggedRequest, write: bool) {
        *self.requests.entry(format!("{} {}", entry.kind, entry.status)).or_default() += 1;
        self.total_requests += 1;
        if entry.status == 429 {
            self.rate_limited += 1;
        }
        if write && entry.status < 300 {
            self.max_records_per_write = self.max_records_per_write.max(entry.records);
            self.records_written += entry.records as u64;
        }
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// Requests of `kind` (all statuses).
    pub fn count(&self, kind: &str) -> u64 {
        self.requests
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(kind))
            .map(|(_, v)| v)
            .sum()
    }
}
