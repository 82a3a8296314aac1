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
    let hooks = inbound.known_hooks().await;
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
    let stamp = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["timestamp"].as_str().map(str::to_owned));
    if !inbound.pings.fresh_stamp(kind, stamp.as_deref()) {
        // A replayed or stale ping: its payloads were read with an earlier one (or will be
        // with the next poll); reading again on it would only spend the budget.
        metrics::counter!("inbound_webhook_notifications_total", "mac" => "replayed").increment(1);
        return StatusCode::OK;
    }
    metrics::counter!("inbound_webhook_notifications_total", "mac" => "valid").increment(1);
    if !inbound.client.fence().passes_pings_on() {
        inbound.ping(kind);
    } else if !inbound.forward(kind, stamp).await {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}

impl Inbound {
    /// A fresh, verified ping of `kind` (received, or passed on by a standby): read.
    pub(in crate::inbound) fn ping(&self, kind: HookKind) {
        self.pings.received(kind);
        if kind == HookKind::Users {
            self.users_changed();
        }
        // At most one read runs per hook with one queued: pings meanwhile merge into it.
        self.pinged(kind).notify_one();
    }
}

/// Pings already seen, per hook: a ping is read once, and one older than [`STALE_PING`]
/// not at all. And when each hook was last pinged and read: a ping that arrived before a
/// payload read started is answered by that read (Airtable pings once the payload is
/// there), so it needs no read of its own.
#[derive(Debug, Default)]
pub struct Pings {
    seen: std::sync::Mutex<std::collections::HashMap<HookKind, std::collections::VecDeque<String>>>,
    times: std::sync::Mutex<std::collections::HashMap<HookKind, Times>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Times {
    pinged: Option<Instant>,
    read: Option<Instant>,
    /// The watch found unread payloads (or the hook gone): read whatever the times say.
    forced: bool,
}

/// Airtable pings within seconds of a change; a ping this old is a replay.
const STALE_PING: chrono::Duration = chrono::Duration::minutes(10);

impl Pings {
    fn times<R>(&self, kind: HookKind, f: impl FnOnce(&mut Times) -> R) -> R {
        f(self.times.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default())
    }

    fn received(&self, kind: HookKind) {
        self.times(kind, |t| t.pinged = Some(Instant::now()));
    }

    /// A payload read of `kind` is about to be sent.
    pub(super) fn reading(&self, kind: HookKind) {
        self.times(kind, |t| t.read = Some(Instant::now()));
    }

    /// The next wake of `kind` must read, whatever the times say.
    pub(super) fn force(&self, kind: HookKind) {
        self.times(kind, |t| t.forced = true);
    }

    /// Whether a wake of `kind` needs a read: false when its latest ping came before the
    /// latest read started.
    pub(super) fn must_read(&self, kind: HookKind) -> bool {
        self.times(kind, |t| {
            let covered = !t.forced && matches!((t.pinged, t.read), (Some(p), Some(r)) if p < r);
            t.forced = false;
            !covered
        })
    }

    /// Whether a verified ping is new: its timestamp recent and not seen before (a ping
    /// without one is taken).
    pub(super) fn fresh_stamp(&self, kind: HookKind, stamp: Option<&str>) -> bool {
        let Some(stamp) = stamp else { return true };
        if chrono::DateTime::parse_from_rfc3339(stamp)
            .is_ok_and(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) > STALE_PING)
        {
            return false;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.entry(kind).or_default();
        if seen.iter().any(|s| s == stamp) {
            return false;
        }
        if seen.len() >= 256 {
            seen.pop_front();
        }
        seen.push_back(stamp.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ping_needs_its_own_read_only_when_it_came_after_the_last_read_started() {
        let p = Pings::default();
        let tick = || tokio::time::advance(Duration::from_millis(5));
        assert!(p.must_read(HookKind::Users), "never read: read");
        p.received(HookKind::Users);
        tick().await;
        p.reading(HookKind::Users);
        assert!(!p.must_read(HookKind::Users), "the read started after the ping answers it");
        tick().await;
        p.received(HookKind::Users);
        assert!(p.must_read(HookKind::Users), "a ping after the read: read again");
        tick().await;
        p.reading(HookKind::Users);
        p.force(HookKind::Users);
        assert!(p.must_read(HookKind::Users), "the watch found unread payloads");
        assert!(!p.must_read(HookKind::Users), "forcing is one wake");
        assert!(p.must_read(HookKind::Base), "each hook on its own");
    }
}
