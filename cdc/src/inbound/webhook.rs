//! The base's two webhooks, each kept alive (created, re-created when broken, refreshed well
//! before expiry), its pings verified, its payloads applied from its stored cursor:
//! - `users`: scoped to the users table, read in the fast lane at once on every ping;
//! - `base`: everything else, read in the bulk lane at most every 5 s, because every
//!   outbound write also raises a payload here and reading each at once would cost a
//!   request per outbound write (reference data is not urgent; its poll runs every 2 minutes).
//!
//! Checkpoints: `inbound.webhook.<kind>` holds a hook (id, MAC secret, notification URL,
//! specification); `inbound.webhook.<kind>.cursor` its next payload number, committed in the
//! same transaction as the changes of the payloads before it. Readable only by the daemon's
//! role.

use super::{apply::Batch, pause, payload, Inbound};
use crate::airtable::{AirtableError, Lane};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::{collections::HashSet, sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

/// Which of the two hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    Users,
    Base,
}

impl HookKind {
    pub const ALL: [HookKind; 2] = [HookKind::Users, HookKind::Base];

    pub fn name(self) -> &'static str {
        match self {
            HookKind::Users => "users",
            HookKind::Base => "base",
        }
    }

    fn lane(self) -> Lane {
        match self {
            HookKind::Users => Lane::Fast,
            HookKind::Base => Lane::Bulk,
        }
    }

    fn checkpoint(self) -> String {
        format!("inbound.webhook.{}", self.name())
    }

    fn cursor(self) -> String {
        format!("inbound.webhook.{}.cursor", self.name())
    }
}

/// The live hook, for MAC checks and payload reads.
#[derive(Clone)]
pub struct Hook {
    pub id: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("id", &self.id).field("secret", &"***").finish()
    }
}

/// Whether `header` (`hmac-sha256=<hex>`) is the MAC of `body` under `secret`, compared in
/// constant time.
pub fn verify_mac(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("hmac-sha256=") else { return false };
    let Ok(given) = hex::decode(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// `POST /webhooks/airtable`, served on METRICS_ADDR.
pub fn router(inbound: Arc<Inbound>) -> Router {
    Router::new()
        .route("/webhooks/airtable", post(notification))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(inbound)
}

/// Verifies the MAC over the raw body, answers at once, and wakes the payload reader.
async fn notification(
    State(inbound): State<Arc<Inbound>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(header) = headers.get("x-airtable-content-mac").and_then(|v| v.to_str().ok()) else {
        metrics::counter!("inbound_webhook_notifications_total", "mac" => "missing").increment(1);
        return StatusCode::UNAUTHORIZED;
    };
    let hooks = inbound.hooks.read().await.clone();
    if hooks.is_empty() {
        // Not known yet (the daemon is starting): Airtable retries a 503; a 401 would
        // tell it the MAC is wrong.
        metrics::counter!("inbound_webhook_notifications_total", "mac" => "early").increment(1);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let valid = hooks.iter().find(|(_, h)| verify_mac(&h.secret, &body, header)).map(|(k, _)| *k);
    let Some(kind) = valid else {
        metrics::counter!("inbound_webhook_notifications_total", "mac" => "invalid").increment(1);
        tracing::warn!("webhook notification with a bad MAC refused");
        return StatusCode::UNAUTHORIZED;
    };
    if !inbound.pings.fresh(kind, &body) {
        // A replayed or stale ping: its payloads were read with an earlier one (or will be
        // with the next poll); reading again on it would only spend the budget.
        metrics::counter!("inbound_webhook_notifications_total", "mac" => "replayed").increment(1);
        return StatusCode::OK;
    }
    metrics::counter!("inbound_webhook_notifications_total", "mac" => "valid").increment(1);
    // At most one read runs per hook with one queued: pings meanwhile merge into it.
    inbound.pinged(kind).notify_one();
    StatusCode::OK
}

/// A payload read refused as if the hook were not there: 404, or the 403 Airtable answers
/// for a model a token cannot see (a missing hook, or a revoked token: the hook check tells).
fn hook_may_be_gone(e: &AirtableError) -> bool {
    e.is_gone()
        || matches!(e, AirtableError::Unauthorized { kind, .. } if kind == "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND")
}

/// Pings already seen, per hook: a ping is read once, and one older than [`STALE_PING`]
/// not at all.
#[derive(Debug, Default)]
pub struct Pings {
    seen: std::sync::Mutex<std::collections::HashMap<HookKind, std::collections::VecDeque<String>>>,
}

/// Airtable pings within seconds of a change; a ping this old is a replay.
const STALE_PING: chrono::Duration = chrono::Duration::minutes(10);

impl Pings {
    /// Whether a verified ping body is new: its timestamp recent and not seen before.
    fn fresh(&self, kind: HookKind, body: &[u8]) -> bool {
        let stamp = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["timestamp"].as_str().map(str::to_owned));
        let Some(stamp) = stamp else { return true };
        if chrono::DateTime::parse_from_rfc3339(&stamp)
            .is_ok_and(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) > STALE_PING)
        {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.entry(kind).or_default();
        if seen.contains(&stamp) {
            return false;
        }
        if seen.len() >= 256 {
            seen.pop_front();
        }
        seen.push_back(stamp);
        true
    }
}

impl Inbound {
    /// Whether mapped table `table` is `kind`'s.
    pub(super) fn covers(&self, kind: HookKind, table: usize) -> bool {
        (Some(table) == self.users()) == (kind == HookKind::Users)
    }

    /// A webhook's specification: record data of the watched (Airtable-owned) fields of its
    /// tables. Creations and deletions are reported whatever the fields.
    async fn spec(&self, kind: HookKind) -> anyhow::Result<Value> {
        let schema = self.schema.read().await;
        let fields = schema.inbound_field_ids(self.applier.mapping(), |t| self.covers(kind, t));
        let mut filters = json!({ "dataTypes": ["tableData"], "watchDataInFieldIds": fields });
        if kind == HookKind::Users {
            let users = self.users().and_then(|u| schema.table_id(u));
            let Some(users) = users else { anyhow::bail!("the base has no users table") };
            filters["recordChangeScope"] = json!(users);
        }
        let mut body = json!({ "specification": { "options": { "filters": filters } } });
        if let Some(url) = &self.config.webhook_public_url {
            body["notificationUrl"] = json!(url);
        }
        Ok(body)
    }

    /// Makes sure the base has our webhook, working; returns true when it was (re)created,
    /// which means payloads may have been missed and a full reconcile is due.
    pub async fn ensure_hook(&self, kind: HookKind) -> anyhow::Result<bool> {
        if self.schema.read().await.is_empty() {
            self.refresh_schema().await?;
        }
        let spec = self.spec(kind).await?;
        let stored = self.applier.checkpoint(&kind.checkpoint()).await?;
        let listed = self.client.webhooks(Lane::Fast).await?;
        let hooks = listed["webhooks"].as_array().cloned().unwrap_or_default();
        if let Some(s) = &stored {
            let id = s["id"].as_str().unwrap_or_default();
            let live = hooks.iter().find(|h| h["id"] == id);
            let expired = |h: &Value| {
                h["expirationTime"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| t.with_timezone(&chrono::Utc) <= chrono::Utc::now())
            };
            let usable = live.is_some_and(|h| {
                h["isHookEnabled"] == json!(true)
                    && !expired(h)
                    && h["notificationUrl"]
                        == spec.get("notificationUrl").cloned().unwrap_or(Value::Null)
            }) && s["spec"] == spec["specification"];
            let secret = s["secret"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            if let (true, Some(live), Some(secret)) = (usable, live, secret) {
                if live["areNotificationsEnabled"] == json!(false)
                    && spec.get("notificationUrl").is_some()
                {
                    self.client.enable_notifications(Lane::Fast, id).await?;
                    tracing::info!(webhook = id, "re-enabled webhook notifications");
                }
                // Checked once a day, refreshed every time: 6 days before expiry, whatever
                // the skew between Airtable's clock and ours. A refresh Airtable refuses
                // means the hook is not usable: it is re-created below.
                match self.client.refresh_webhook(Lane::Fast, id).await {
                    Ok(refreshed) => {
                        tracing::info!(webhook = id, expires = %refreshed["expirationTime"], "refreshed the webhook");
                        self.hooks.write().await.insert(kind, Hook { id: id.to_owned(), secret });
                        return Ok(false);
                    }
                    Err(e @ AirtableError::Rejected { .. }) => {
                        tracing::warn!(webhook = id, error = %e, "the webhook cannot be refreshed")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if live.is_some() {
                match self.client.delete_webhook(Lane::Fast, id).await {
                    Err(e) if !e.is_gone() => return Err(e.into()),
                    _ => {}
                }
            }
            tracing::warn!(
                webhook = id,
                "the webhook is gone, broken or outdated: creating a new one"
            );
        }
        let created = self.client.create_webhook(Lane::Fast, &spec).await?;
        let (Some(id), Some(secret)) =
            (created["id"].as_str(), created["macSecretBase64"].as_str())
        else {
            anyhow::bail!("Airtable created a webhook without an id or secret: {created}");
        };
        let secret_bytes = base64::engine::general_purpose::STANDARD.decode(secret)?;
        let mut batch = Batch::default();
        batch.checkpoints.push((
            kind.checkpoint(),
            json!({ "id": id, "secret": secret, "spec": spec["specification"], "notification_url": spec.get("notificationUrl") }),
        ));
        batch.checkpoints.push((kind.cursor(), json!({ "id": id, "cursor": 1 })));
        self.applier.apply(batch).await?;
        self.hooks.write().await.insert(kind, Hook { id: id.to_owned(), secret: secret_bytes });
        metrics::counter!("inbound_webhooks_created_total").increment(1);
        tracing::info!(webhook = id, kind = kind.name(), "created the webhook");
        Ok(true)
    }

    /// Reads and applies payloads from the stored cursor until Airtable has no more.
    /// Returns whether the hook reported an error (it must be re-created).
    pub async fn drain_payloads(&self, kind: HookKind) -> anyhow::Result<bool> {
        let Some(hook) = self.hooks.read().await.get(&kind).cloned() else { return Ok(false) };
        let wanted = |t: usize| self.covers(kind, t);
        let noticed = Instant::now();
        // Read once: every page commits its successor, so the loop knows it from there.
        let mut cursor = self
            .applier
            .checkpoint(&kind.cursor())
            .await?
            .filter(|c| c["id"] == hook.id.as_str())
            .and_then(|c| c["cursor"].as_u64())
            .unwrap_or(1);
        loop {
            let page = self.client.payloads(kind.lane(), &hook.id, cursor).await?;
            let payloads = page["payloads"].as_array().cloned().unwrap_or_default();
            let next = page["cursor"].as_u64().unwrap_or(cursor + payloads.len() as u64);
            let more = page["mightHaveMore"].as_bool().unwrap_or(false);
            metrics::counter!("inbound_payloads_fetched_total").increment(payloads.len() as u64);
            if payloads.is_empty() {
                return Ok(false);
            }
            let keys: Vec<String> =
                (0..payloads.len() as u64).map(|k| format!("{}:{}", hook.id, cursor + k)).collect();
            let seen: HashSet<String> = sqlx::query_scalar(
                "SELECT event_key FROM sync_inbox_events WHERE source = 'webhook' AND event_key = ANY($1)",
            )
            .bind(&keys)
            .fetch_all(self.applier.pool())
            .await?
            .into_iter()
            .collect();
            let fresh: Vec<Value> = payloads
                .iter()
                .zip(&keys)
                .filter(|(_, k)| !seen.contains(*k))
                .map(|(p, _)| p.clone())
                .collect();
            let mut plan = payload::plan(
                &fresh,
                &*self.schema.read().await,
                self.applier.mapping(),
                &wanted,
                false,
            );
            if plan.unknown_ids {
                // The base changed since we read its schema: read it again, then anything
                // still unknown is parked.
                self.refresh_schema().await?;
                plan = payload::plan(
                    &fresh,
                    &*self.schema.read().await,
                    self.applier.mapping(),
                    &wanted,
                    true,
                );
            }
            // A row is never created, or un-parked, from a partial change: such records are
            // read whole first.
            let partial: Vec<(usize, String)> = plan
                .upserts
                .iter()
                .filter(|u| !u.complete)
                .map(|u| (u.table, u.record_id.clone()))
                .collect();
            for (ti, rid) in self.applier.needing_whole_records(&partial).await? {
                plan.upserts.retain(|u| !(u.table == ti && u.record_id == rid));
                plan.reread.entry(ti).or_default().insert(rid);
            }
            let users = self.users();
            let mut upserts = std::mem::take(&mut plan.upserts);
            // Users first: their re-read uses the fast lane and goes before bulk reads.
            let mut tables: Vec<usize> = plan.reread.keys().copied().collect();
            tables.sort_by_key(|t| (Some(*t) != users, *t));
            for ti in tables {
                let ids: Vec<String> = plan.reread[&ti].iter().cloned().collect();
                let t = &self.applier.mapping().tables[ti];
                let records = self
                    .client
                    .records_by_id(self.lane(ti), &t.airtable, &ids, &self.read_fields(t))
                    .await?;
                for mut u in self.upserts(ti, &records) {
                    u.changed_at = plan.reread_at.get(&(ti, u.record_id.clone())).copied();
                    upserts.push(u);
                }
            }
            let upserts = self.with_parents(upserts).await?;
            let has_users = upserts.iter().any(|u| Some(u.table) == users);
            let batch = Batch {
                upserts,
                deletes: plan.deletes,
                parked: plan.parked,
                events: keys
                    .iter()
                    .filter(|k| !seen.contains(*k))
                    .map(|k| ("webhook".to_owned(), k.clone()))
                    .collect(),
                checkpoints: vec![(kind.cursor(), json!({ "id": hook.id, "cursor": next }))],
            };
            let applied = self.applier.apply(batch).await?;
            if has_users {
                metrics::histogram!("inbound_fast_lane_seconds")
                    .record(noticed.elapsed().as_secs_f64());
            }
            tracing::info!(webhook = %hook.id, cursor, next, written = applied.written, deleted = applied.deleted + applied.soft_deleted, parked = applied.parked, "applied webhook payloads");
            self.stamp(&applied).await;
            if let Some(code) = plan.hook_error {
                tracing::warn!(webhook = %hook.id, %code, "the webhook reported an error: it will be re-created");
                self.hooks.write().await.remove(&kind);
                return Ok(true);
            }
            if !more {
                return Ok(false);
            }
            cursor = next;
        }
    }

    /// Keeps the hook alive and applies its payloads: on every ping, on a timer, and once a
    /// day checks (and refreshes) the hook itself.
    pub(super) async fn webhook_task(
        self: Arc<Self>,
        kind: HookKind,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if !self.config.webhooks {
            return;
        }
        let mut checked: Option<Instant> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            if checked.is_none_or(|c| c.elapsed() > Duration::from_secs(24 * 3600)) {
                match self.ensure_hook(kind).await {
                    Ok(recreated) => {
                        checked = Some(Instant::now());
                        if recreated {
                            self.reconcile_due.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot set up the webhook; retrying (polling goes on)");
                        if !pause(&mut shutdown, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        continue;
                    }
                }
            }
            let drained = Instant::now();
            match self.drain_payloads(kind).await {
                Ok(true) => checked = None,
                Ok(false) => backoff = Duration::from_secs(1),
                Err(e) if e.downcast_ref::<AirtableError>().is_some_and(hook_may_be_gone) => {
                    // Deleted or expired under us: check it now, and re-create it (then
                    // reconcile) if it is gone, rather than at the next daily check.
                    tracing::warn!(error = %e, kind = kind.name(), "the webhook is gone: re-creating it");
                    self.hooks.write().await.remove(&kind);
                    checked = None;
                    continue;
                }
                Err(e) => {
                    metrics::counter!("inbound_errors_total", "task" => "webhook").increment(1);
                    tracing::warn!(error = %e, "cannot apply webhook payloads; retrying");
                    if !pause(&mut shutdown, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                    continue;
                }
            }
            if checked.is_none() {
                continue;
            }
            let gap = match kind {
                HookKind::Users => Duration::ZERO,
                HookKind::Base => self.config.base_webhook_gap,
            }
            .saturating_sub(drained.elapsed());
            if !gap.is_zero() && !pause(&mut shutdown, gap).await {
                return;
            }
            tokio::select! {
                _ = self.pinged(kind).notified() => {}
                _ = tokio::time::sleep(self.config.webhook_poll) => {}
                _ = super::stopped(&mut shutdown) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_mac_test_vector_verifies_and_anything_else_fails() {
        let secret = base64::engine::general_purpose::STANDARD
            .decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("base64");
        let body = br#"{"base":{"id":"appTESTBASE000001"},"webhook":{"id":"achTESTHOOK000001"},"timestamp":"2024-01-01T00:00:00.000Z"}"#;
        let good = "hmac-sha256=526f7c10023ffcca6ea4cb12269642614464d920e24d9260935e3365c35d9e55";
        assert!(verify_mac(&secret, body, good));
        assert!(!verify_mac(&secret, b"{}", good));
        assert!(!verify_mac(&secret, body, &good.replace("526f", "526e")));
        assert!(!verify_mac(
            &secret,
            body,
            "526f7c10023ffcca6ea4cb12269642614464d920e24d9260935e3365c35d9e55"
        ));
        assert!(!verify_mac(&secret, body, "hmac-sha256=zz"));
        assert!(!verify_mac(&[1, 2, 3], body, good));
    }
}
