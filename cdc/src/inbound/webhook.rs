//! The base's webhook: kept alive (created, re-created when broken, refreshed well before
//! expiry), its pings verified, its payloads applied from the stored cursor.
//!
//! Checkpoints: `inbound.webhook` holds the hook (id, MAC secret, notification URL, the
//! watched fields); `inbound.webhook.cursor` the next payload number, committed in the
//! same transaction as the changes of the payloads before it. Both are readable only by
//! the daemon's role.

use super::{apply::Batch, pause, payload, Inbound};
use crate::airtable::Lane;
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::{collections::HashSet, sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

const HOOK: &str = "inbound.webhook";
const CURSOR: &str = "inbound.webhook.cursor";
/// Refresh when less than this is left of the 7 days.
const REFRESH_BEFORE: chrono::Duration = chrono::Duration::days(5);

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
    let hook = inbound.hook.read().await.clone();
    let valid = hook.is_some_and(|h| verify_mac(&h.secret, &body, header));
    if !valid {
        metrics::counter!("inbound_webhook_notifications_total", "mac" => "invalid").increment(1);
        tracing::warn!("webhook notification with a bad MAC refused");
        return StatusCode::UNAUTHORIZED;
    }
    metrics::counter!("inbound_webhook_notifications_total", "mac" => "valid").increment(1);
    inbound.pinged.notify_one();
    StatusCode::OK
}

impl Inbound {
    /// The webhook's specification: record data of the watched (Airtable-owned) fields.
    /// Creations and deletions are reported whatever the fields.
    async fn spec(&self) -> Value {
        let fields = self.schema.read().await.inbound_field_ids(self.applier.mapping());
        let mut body = json!({ "specification": { "options": { "filters": {
            "dataTypes": ["tableData"],
            "watchDataInFieldIds": fields,
        } } } });
        if let Some(url) = &self.config.webhook_public_url {
            body["notificationUrl"] = json!(url);
        }
        body
    }

    /// Makes sure the base has our webhook, working; returns true when it was (re)created,
    /// which means payloads may have been missed and a full reconcile is due.
    pub async fn ensure_hook(&self) -> anyhow::Result<bool> {
        if self.schema.read().await.is_empty() {
            self.refresh_schema().await?;
        }
        let spec = self.spec().await;
        let stored = self.applier.checkpoint(HOOK).await?;
        let listed = self.client.webhooks(Lane::Fast).await?;
        let hooks = listed["webhooks"].as_array().cloned().unwrap_or_default();
        if let Some(s) = &stored {
            let id = s["id"].as_str().unwrap_or_default();
            let live = hooks.iter().find(|h| h["id"] == id);
            let usable = live.is_some_and(|h| {
                h["isHookEnabled"] == json!(true)
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
                let expires = live["expirationTime"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if expires.is_some_and(|e| e - Utc::now() < REFRESH_BEFORE) {
                    self.client.refresh_webhook(Lane::Fast, id).await?;
                    tracing::info!(webhook = id, "refreshed the webhook");
                }
                *self.hook.write().await = Some(Hook { id: id.to_owned(), secret });
                return Ok(false);
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
            HOOK.into(),
            json!({ "id": id, "secret": secret, "spec": spec["specification"], "notification_url": spec.get("notificationUrl") }),
        ));
        batch.checkpoints.push((CURSOR.into(), json!({ "id": id, "cursor": 1 })));
        self.applier.apply(batch).await?;
        *self.hook.write().await = Some(Hook { id: id.to_owned(), secret: secret_bytes });
        metrics::counter!("inbound_webhooks_created_total").increment(1);
        tracing::info!(webhook = id, "created the webhook");
        Ok(true)
    }

    /// Reads and applies payloads from the stored cursor until Airtable has no more.
    /// Returns whether the hook reported an error (it must be re-created).
    pub async fn drain_payloads(&self) -> anyhow::Result<bool> {
        let Some(hook) = self.hook.read().await.clone() else { return Ok(false) };
        let noticed = Instant::now();
        loop {
            let stored = self.applier.checkpoint(CURSOR).await?;
            let cursor = stored
                .filter(|c| c["id"] == hook.id.as_str())
                .and_then(|c| c["cursor"].as_u64())
                .unwrap_or(1);
            let page = self.client.payloads(Lane::Fast, &hook.id, cursor).await?;
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
            let mut plan =
                payload::plan(&fresh, &*self.schema.read().await, self.applier.mapping(), false);
            if plan.unknown_ids {
                // The base changed since we read its schema: read it again, then anything
                // still unknown is parked.
                self.refresh_schema().await?;
                plan =
                    payload::plan(&fresh, &*self.schema.read().await, self.applier.mapping(), true);
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
                checkpoints: vec![(CURSOR.into(), json!({ "id": hook.id, "cursor": next }))],
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
                *self.hook.write().await = None;
                return Ok(true);
            }
            if !more {
                return Ok(false);
            }
        }
    }

    /// Keeps the hook alive and applies its payloads: on every ping, on a timer, and once a
    /// day checks (and refreshes) the hook itself.
    pub(super) async fn webhook_task(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if !self.config.webhooks {
            return;
        }
        let mut checked: Option<Instant> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            if checked.is_none_or(|c| c.elapsed() > Duration::from_secs(24 * 3600)) {
                match self.ensure_hook().await {
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
            match self.drain_payloads().await {
                Ok(true) => checked = None,
                Ok(false) => backoff = Duration::from_secs(1),
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
            tokio::select! {
                _ = self.pinged.notified() => {}
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
