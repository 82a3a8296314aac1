//! The IO service: Convex function calls, every answer classified ([`super::retry`]).
//! Transport trouble is retried with jittered exponential backoff, bounded; everything else
//! comes back at once, typed.

use super::{
    config::ConvexConfig,
    retry::{classify, ConvexError, Verdict},
};
use crate::{backoff::Backoff, leadership::Fence};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// One change on the wire (`mirror:apply`'s argument).
#[derive(Debug, Clone, Serialize)]
pub struct WireChange {
    pub table: String,
    pub id: String,
    /// The commit LSN, decimal.
    pub version: String,
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc: Option<Map<String, Value>>,
}

impl WireChange {
    pub fn upsert(table: &str, id: uuid::Uuid, version: u64, doc: Map<String, Value>) -> Self {
        Self {
            table: table.to_owned(),
            id: id.to_string(),
            version: version.to_string(),
            op: "upsert",
            doc: Some(doc),
        }
    }

    pub fn delete(table: &str, id: uuid::Uuid, version: u64) -> Self {
        Self {
            table: table.to_owned(),
            id: id.to_string(),
            version: version.to_string(),
            op: "delete",
            doc: None,
        }
    }

    /// Its JSON, as a call's arguments carry it.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a mirror:apply call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Outcome {
    pub applied: u64,
    pub stale: u64,
}

/// A stored document as mirror:snapshot returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub version: String,
    pub deleted: bool,
    pub doc: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotPage {
    pub page: Vec<Snapshot>,
    pub is_done: bool,
    pub continue_cursor: String,
}

pub struct ConvexClient {
    http: reqwest::Client,
    config: ConvexConfig,
    fence: Arc<Fence>,
}

impl ConvexClient {
    pub fn new(config: ConvexConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(config.request_timeout).build()?;
        Ok(Self { http, config, fence: Arc::default() })
    }

    pub fn config(&self) -> &ConvexConfig {
        &self.config
    }

    /// The fence every call passes (shared with the daemon's leadership).
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// mirror:apply with `changes` (at most 100).
    pub async fn apply(&self, changes: &[WireChange]) -> Result<Outcome, ConvexError> {
        let encoded: Vec<String> = changes.iter().map(WireChange::encode).collect();
        self.apply_encoded(&encoded).await
    }

    /// mirror:apply with changes already encoded ([`WireChange::encode`]): a flush encodes
    /// each change once, for its size and its call, also when a refused call is bisected.
    pub async fn apply_encoded(&self, changes: &[String]) -> Result<Outcome, ConvexError> {
        let body = format!(
            r#"{{"path":"mirror:apply","args":{{"changes":[{}]}},"format":"json"}}"#,
            changes.join(",")
        );
        let value = self.call("mutation", "mirror:apply", body).await?;
        serde_json::from_value(value.clone()).map_err(|e| ConvexError::Function {
            message: format!("mirror:apply answered {value} ({e}): is convex/mirror.ts deployed?"),
        })
    }

    /// One page of `table` (Convex's name) after `cursor`.
    pub async fn snapshot(
        &self,
        table: &str,
        cursor: Option<&str>,
        num_items: usize,
    ) -> Result<SnapshotPage, ConvexError> {
        let args = json!({ "table": table, "cursor": cursor, "numItems": num_items });
        let body = json!({ "path": "mirror:snapshot", "args": args, "format": "json" }).to_string();
        let value = self.call("query", "mirror:snapshot", body).await?;
        serde_json::from_value(value.clone()).map_err(|e| ConvexError::Function {
            message: format!(
                "mirror:snapshot answered {value} ({e}): is convex/mirror.ts deployed?"
            ),
        })
    }

    /// One function call; `body` is the request's JSON, naming `path`.
    async fn call(&self, kind: &str, path: &str, body: String) -> Result<Value, ConvexError> {
        let url = format!("{}/api/{kind}", self.config.url);
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            self.fence.admit().await?;
            let sent = self
                .http
                .post(&url)
                .header(
                    "authorization",
                    format!("Convex {}", self.config.deploy_key.expose_secret()),
                )
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let verdict = match sent {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body = r.json::<Value>().await.ok();
                    classify(status, body.as_ref())
                }
                Err(e) => Verdict::Retry(format!("transport: {e}")),
            };
            let result = match verdict {
                Verdict::Success(_) => "success",
                Verdict::Refused(_) => "refused",
                Verdict::Unauthorized(_) => "unauthorized",
                Verdict::Retry(_) => "retry",
            };
            metrics::counter!("mirror_calls_total", "function" => path.to_owned(), "result" => result).increment(1);
            match verdict {
                Verdict::Success(v) => return Ok(v),
                Verdict::Refused(message) => return Err(ConvexError::Function { message }),
                Verdict::Unauthorized(message) => {
                    return Err(ConvexError::Unauthorized { message })
                }
                Verdict::Retry(last) => {
                    if backoff.attempts() + 1 >= self.config.max_attempts {
                        return Err(ConvexError::Exhausted {
                            attempts: backoff.attempts() + 1,
                            last,
                        });
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(function = path, error = %last, ?delay, "Convex call failed: retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
