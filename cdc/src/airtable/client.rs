//! The IO service: Airtable requests through the shared budget, every response classified.
//! Transient failures (429, 5xx, timeouts, dropped connections) are retried with jittered
//! exponential backoff, bounded; everything else is returned at once, typed.

pub use crate::airtable::retry::AirtableError;
use crate::{
    airtable::{
        binding::{Wire, WireTable},
        budget::{Budget, Lane},
        config::AirtableConfig,
        meta::BaseMeta,
        retry::{classify, error_kind, Verdict},
    },
    backoff::Backoff,
    leadership::Fence,
};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

pub struct AirtableClient {
    http: reqwest::Client,
    config: AirtableConfig,
    budget: Arc<Budget>,
    /// Mapped names to ids, once bound: requests carry ids, responses the mapping's names.
    wire: RwLock<Option<Arc<Wire>>>,
    /// Whether this process may send now (HA: only the leader does).
    fence: Arc<Fence>,
}

/// The leader epoch a request was sent under.
pub const EPOCH_HEADER: &str = "x-coach-leader-epoch";

/// `'value'` for a formula, escaped so no value can change the formula.
pub fn formula_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl AirtableClient {
    pub fn new(config: AirtableConfig, budget: Arc<Budget>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(16)
            .build()?;
        Ok(Self { http, config, budget, wire: RwLock::new(None), fence: Arc::default() })
    }

    /// The fence every request passes (shared with the daemon's leadership).
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// From now on, tables and fields go by id on the wire (see [`crate::airtable::binding`]).
    pub fn bind(&self, wire: Wire) {
        *self.wire.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(wire));
    }

    pub fn wire(&self) -> Option<Arc<Wire>> {
        self.wire.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The bound table of this mapped name, if any.
    fn wired(&self, table: &str) -> Option<WireTable> {
        self.wire().and_then(|w| w.table(table).cloned())
    }

    /// Binds again by the same ids: Airtable's current names, for formulas (after a rename
    /// since the binding). Errors leave the binding as it was.
    async fn rebind(&self, lane: Lane) {
        match self.tables(lane).await {
            Ok(meta) => {
                self.rebound(&BaseMeta::from_json(&meta));
                tracing::info!(renames = ?self.wire().map(|w| w.renames()), "re-read Airtable's names");
            }
            Err(e) => tracing::warn!(error = %e, "cannot re-read Airtable's names"),
        }
    }

    /// A fresh read of the base's schema: the binding (if any) takes its current names, and
    /// the schema comes back under the mapping's names.
    pub fn rebound(&self, meta: &BaseMeta) -> BaseMeta {
        match self.wire() {
            Some(wire) => {
                let wire = wire.refresh(meta);
                let mapped = meta.as_mapped(&wire);
                self.bind(wire);
                mapped
            }
            None => meta.clone(),
        }
    }

    pub fn config(&self) -> &AirtableConfig {
        &self.config
    }

    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v0/{path}", self.config.api_url)
    }

    fn table_path(&self, table: &str) -> String {
        let wired = self.wired(table);
        let table = wired.as_ref().map_or(table, |w| w.id.as_str());
        let t = percent_encoding::utf8_percent_encode(table, percent_encoding::NON_ALPHANUMERIC);
        format!("{}/{t}", self.config.base_id)
    }

    /// One logical request, retried while the failure is transient.
    pub async fn send(
        &self,
        lane: Lane,
        op: &'static str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Value, AirtableError> {
        let mut last = String::new();
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        for attempt in 0..self.config.max_attempts {
            if attempt > 0 {
                metrics::counter!("airtable_retries_total", "op" => op).increment(1);
            }
            let epoch = loop {
                self.fence.admit().await?;
                self.budget.acquire(lane).await;
                // Asked again: the wait for a slot may have outlasted the lease. A request
                // that must wait takes a new slot after, so requests never bunch up behind
                // the fence and overrun the base's window.
                if let Some(epoch) = self.fence.admits_now()? {
                    break epoch;
                }
            };
            self.budget.calls().record(op);
            let mut req = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(self.config.token.expose_secret())
                .query(query);
            if let Some(epoch) = epoch {
                // Which leader sent it (logs; the HA tests check no deposed one does).
                req = req.header(EPOCH_HEADER, epoch);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = Instant::now();
            let result = req.send().await;
            let (status, outcome) = match result {
                Err(e) => (
                    "error".to_owned(),
                    Err(if e.is_timeout() {
                        "timeout".to_owned()
                    } else {
                        format!("connection: {e}")
                    }),
                ),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let text = resp.text().await;
                    (
                        status.as_u16().to_string(),
                        match text {
                            Err(e) => Err(format!("response lost: {e}")),
                            Ok(text) => Ok((status, retry_after, text)),
                        },
                    )
                }
            };
            metrics::histogram!("airtable_request_duration_seconds", "op" => op)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!("airtable_requests_total", "op" => op, "status" => status)
                .increment(1);
            match outcome {
                Err(reason) => last = reason,
                Ok((status, retry_after, text)) => {
                    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let (kind, message) =
                        if status.is_success() { Default::default() } else { error_kind(&json) };
                    match classify(status.as_u16(), &kind) {
                        Verdict::Success => {
                            return Ok(if text.trim().is_empty() { Value::Null } else { json })
                        }
                        Verdict::RateLimited => {
                            metrics::counter!("airtable_rate_limited_total").increment(1);
                            let penalty = retry_after
                                .map(Duration::from_secs)
                                .unwrap_or_default()
                                .max(self.config.penalty);
                            tracing::warn!(?penalty, "Airtable rate limit: pausing the base");
                            self.budget.penalize(penalty);
                            // A successor taking over meanwhile waits it out too.
                            self.fence.penalized_until(tokio::time::Instant::now() + penalty);
                            last = "429 rate limited".into();
                            continue;
                        }
                        Verdict::Retry => {
                            last = format!("{status}");
                            if let Some(secs) = retry_after {
                                tokio::time::sleep(Duration::from_secs(secs)).await;
                                continue;
                            }
                        }
                        Verdict::Unauthorized => {
                            metrics::counter!("airtable_unauthorized_total", "op" => op)
                                .increment(1);
                            return Err(AirtableError::Unauthorized {
                                status: status.as_u16(),
                                kind,
                                message,
                            });
                        }
                        Verdict::Rejected => {
                            return Err(AirtableError::Rejected {
                                status: status.as_u16(),
                                kind,
                                message,
                            })
                        }
                    }
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
        Err(AirtableError::Exhausted { attempts: self.config.max_attempts, last })
    }

    /// performUpsert (PATCH: fields not sent keep their values) of ≤ 10 records merged on
    /// `merge_field`; a record given with its Airtable id is updated by that id instead (an
    /// imported record may lack its merge value until this write stamps it). Returns each
    /// record's id, in request order.
    pub async fn upsert(
        &self,
        lane: Lane,
        table: &str,
        merge_field: &str,
        records: &[(Option<&str>, &Map<String, Value>)],
    ) -> Result<Vec<String>, AirtableError> {
        let wired = self.wired(table).unwrap_or_default();
        let records: Vec<Value> = records
            .iter()
            .map(|(id, f)| match id {
                Some(id) => json!({ "id": id, "fields": wired.outgoing(f) }),
                None => json!({ "fields": wired.outgoing(f) }),
            })
            .collect();
        let body = json!({
            "performUpsert": { "fieldsToMergeOn": [wired.field_id(merge_field)] },
            "records": records,
            "typecast": false,
        });
        metrics::histogram!("airtable_records_per_request", "op" => "upsert")
            .record(records.len() as f64);
        let resp = self
            .send(lane, "upsert", Method::PATCH, &self.table_path(table), &[], Some(&body))
            .await?;
        Ok(resp["records"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default())
    }

    /// Deletes ≤ 10 records by id.
    pub async fn delete(
        &self,
        lane: Lane,
        table: &str,
        ids: &[String],
    ) -> Result<(), AirtableError> {
        let query: Vec<(String, String)> =
            ids.iter().map(|id| ("records[]".to_owned(), id.clone())).collect();
        metrics::histogram!("airtable_records_per_request", "op" => "delete")
            .record(ids.len() as f64);
        self.send(lane, "delete", Method::DELETE, &self.table_path(table), &query, None)
            .await
            .map(|_| ())
    }

    /// Record ids whose `merge_field` is one of `values` (value -> id), through POST
    /// listRecords so long formulas fit.
    pub async fn find_by_merge(
        &self,
        lane: Lane,
        table: &str,
        merge_field: &str,
        values: &[String],
    ) -> Result<Vec<(String, String)>, AirtableError> {
        let mut out = Vec::new();
        for chunk in values.chunks(50) {
            let terms: Vec<String> =
                chunk.iter().map(|v| format!("{{{merge_field}}}={}", formula_string(v))).collect();
            let formula = format!("OR({})", terms.join(","));
            out.extend(
                self.list_merge(lane, table, merge_field, Some(&formula))
                    .await?
                    .into_iter()
                    .filter(|(v, _)| !v.is_empty()),
            );
        }
        Ok(out)
    }

    /// Every record of a table as (merge value, record id); records without a merge value
    /// come back with an empty one.
    pub async fn list_merge_values(
        &self,
        lane: Lane,
        table: &str,
        merge_field: &str,
    ) -> Result<Vec<(String, String)>, AirtableError> {
        self.list_merge(lane, table, merge_field, None).await
    }

    async fn list_merge(
        &self,
        lane: Lane,
        table: &str,
        merge_field: &str,
        formula: Option<&str>,
    ) -> Result<Vec<(String, String)>, AirtableError> {
        let records = self.list_records(lane, table, formula, &[merge_field.to_owned()]).await?;
        Ok(records
            .iter()
            .filter_map(|r| {
                let id = r["id"].as_str()?;
                Some((r["fields"][merge_field].as_str().unwrap_or("").to_owned(), id.to_owned()))
            })
            .collect())
    }

    /// Every record matching `formula` (all when None), only `fields`, through POST
    /// listRecords so long formulas fit; starts over when Airtable expires the listing's
    /// iterator. Records come back as Airtable sends them (`{id, createdTime, fields}`).
    pub async fn list_records(
        &self,
        lane: Lane,
        table: &str,
        formula: Option<&str>,
        fields: &[String],
    ) -> Result<Vec<Value>, AirtableError> {
        'restart: loop {
            let mut out = Vec::new();
            let mut offset: Option<String> = None;
            loop {
                let (records, next) =
                    match self.list_page(lane, table, formula, fields, offset.as_deref()).await {
                        Err(e) if e.is_expired_listing() => continue 'restart,
                        other => other?,
                    };
                out.extend(records);
                match next {
                    // A whole listing can take seconds at the rate limit: a leader stepping
                    // down leaves the rest to its successor.
                    Some(_) if self.fence.stopping() => {
                        return Err(crate::leadership::Fenced::Stopping.into())
                    }
                    Some(o) => offset = Some(o),
                    None => return Ok(out),
                }
            }
        }
    }

    /// One page (≤ 100 records) of a listing, and the offset of the next page if any. An
    /// expired offset fails with [`AirtableError::is_expired_listing`]: list again.
    pub async fn list_page(
        &self,
        lane: Lane,
        table: &str,
        formula: Option<&str>,
        fields: &[String],
        offset: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), AirtableError> {
        let path = format!("{}/listRecords", self.table_path(table));
        let mut retried = false;
        loop {
            let wired = self.wired(table);
            let mut body = json!({ "pageSize": 100 });
            match &wired {
                Some(w) => {
                    let ids: Vec<&str> = fields.iter().map(|f| w.field_id(f)).collect();
                    body["fields"] = json!(ids);
                    body["returnFieldsByFieldId"] = json!(true);
                }
                None => body["fields"] = json!(fields),
            }
            if let Some(f) = formula {
                body["filterByFormula"] =
                    json!(wired.as_ref().map_or_else(|| f.to_owned(), |w| w.formula(f)));
            }
            if let Some(o) = offset {
                body["offset"] = json!(o);
            }
            let mut resp = match self
                .send(lane, "list", Method::POST, &path, &[], Some(&body))
                .await
            {
                // A field renamed since the binding: formulas need its new name.
                Err(e)
                    if e.is_bad_formula() && formula.is_some() && wired.is_some() && !retried =>
                {
                    retried = true;
                    self.rebind(lane).await;
                    continue;
                }
                other => other?,
            };
            let records = match resp["records"].take() {
                Value::Array(a) => a,
                _ => Vec::new(),
            };
            let records = match &wired {
                Some(w) => records
                    .into_iter()
                    .map(|mut r| {
                        if let Value::Object(cells) = r["fields"].take() {
                            r["fields"] = Value::Object(w.incoming(cells));
                        }
                        r
                    })
                    .collect(),
                None => records,
            };
            return Ok((records, resp["offset"].as_str().map(str::to_owned)));
        }
    }

    /// Records by id (≤ 50 per request: the formula stays short), only `fields`.
    pub async fn records_by_id(
        &self,
        lane: Lane,
        table: &str,
        ids: &[String],
        fields: &[String],
    ) -> Result<Vec<Value>, AirtableError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(50) {
            let terms: Vec<String> =
                chunk.iter().map(|id| format!("RECORD_ID()={}", formula_string(id))).collect();
            let formula = format!("OR({})", terms.join(","));
            out.extend(self.list_records(lane, table, Some(&formula), fields).await?);
        }
        Ok(out)
    }

    /// PATCH ≤ 10 records by id (fields not sent keep their values).
    pub async fn update(
        &self,
        lane: Lane,
        table: &str,
        records: &[(String, Map<String, Value>)],
    ) -> Result<(), AirtableError> {
        let wired = self.wired(table).unwrap_or_default();
        let body = json!({
            "records": records.iter().map(|(id, f)| json!({ "id": id, "fields": wired.outgoing(f) })).collect::<Vec<_>>(),
            "typecast": false,
        });
        self.send(lane, "update", Method::PATCH, &self.table_path(table), &[], Some(&body))
            .await
            .map(|_| ())
    }

    /// The base's tables (Meta API).
    pub async fn tables(&self, lane: Lane) -> Result<Value, AirtableError> {
        self.send(
            lane,
            "meta",
            Method::GET,
            &format!("meta/bases/{}/tables", self.config.base_id),
            &[],
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_strings_cannot_escape_their_quotes() {
        assert_eq!(formula_string("a'b"), r"'a\'b'");
        assert_eq!(formula_string(r"a\'), TRUE(), ('"), r"'a\\\'), TRUE(), (\''");
    }
}
