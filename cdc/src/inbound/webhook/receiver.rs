//! The receiver: pings verified (MAC over the raw body), replays and stale pings dropped,
//! the payload reader woken.

use super::*;
use secrecy::ExposeSecret;

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
    let valid = hooks
        .iter()
        .find(|(_, h)| verify_mac(h.secret.expose_secret(), &body, header))
        .map(|(k, _)| *k);
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
    if kind == super::HookKind::Users {
        inbound.users_changed();
    }
    // At most one read runs per hook with one queued: pings meanwhile merge into it.
    inbound.pinged(kind).notify_one();
    StatusCode::OK
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
