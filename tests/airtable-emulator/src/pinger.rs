//! Notification pings: coalesced, signed, retried on Airtable's schedule (scaled by
//! config), and after the last failure notifications are switched off for the hook.

use crate::{clock::iso, lock, Shared};
use serde_json::json;
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    time::Instant,
};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Pinger {
    pending: AtomicBool,
    stopped: AtomicBool,
    wake: Notify,
}

impl Pinger {
    /// Asks for a ping; many requests before it is sent make one ping.
    pub fn request(&self) {
        self.pending.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Starts the worker for one webhook.
pub fn spawn(shared: &Arc<Shared>, base_id: String, hook_id: String) -> Arc<Pinger> {
    let pinger = Arc::new(Pinger::default());
    let weak = Arc::downgrade(shared);
    let p = pinger.clone();
    tokio::spawn(async move { run(weak, base_id, hook_id, p).await });
    pinger
}

async fn run(shared: Weak<Shared>, base_id: String, hook_id: String, pinger: Arc<Pinger>) {
    loop {
        pinger.wake.notified().await;
        if pinger.stopped.load(Ordering::SeqCst) {
            return;
        }
        while pinger.pending.swap(false, Ordering::SeqCst) {
            let Some(shared) = shared.upgrade() else { return };
            if !deliver(&shared, &base_id, &hook_id, &pinger).await {
                return;
            }
        }
    }
}

/// Sends one ping with retries. Returns false when the hook is gone.
async fn deliver(shared: &Arc<Shared>, base_id: &str, hook_id: &str, pinger: &Pinger) -> bool {
    let retries = shared.config.ping_retries;
    for attempt in 0..=retries {
        if pinger.stopped.load(Ordering::SeqCst) {
            return false;
        }
        let now = shared.clock.now();
        let (url, secret) = {
            let world = lock(&shared.world);
            let Some(hook) =
                world.bases.get(base_id).and_then(|b| b.webhooks.iter().find(|h| h.id == hook_id))
            else {
                return false;
            };
            match (&hook.notification_url, hook.notifications_enabled) {
                (Some(url), true) => (url.clone(), hook.mac_secret.clone()),
                _ => return true,
            }
        };
        if shared.lose_pings.load(Ordering::SeqCst) {
            lock(&shared.stats).pings_sent += 1;
            return true;
        }
        // Compact JSON, no trailing newline: the MAC covers exactly these bytes.
        let body = json!({ "base": { "id": base_id }, "webhook": { "id": hook_id }, "timestamp": iso(now) }).to_string();
        let mac = crate::webhooks::mac_header(&secret, body.as_bytes());
        let started = Instant::now();
        let result = shared
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("X-Airtable-Content-MAC", mac)
            .body(body)
            .send()
            .await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let error = match result {
            Ok(r) if r.status().as_u16() == 200 || r.status().as_u16() == 204 => None,
            Ok(r) => Some(format!("notification URL answered {}", r.status())),
            Err(e) => Some(format!("notification failed: {e}")),
        };
        let will_retry = error.is_some() && attempt < retries;
        {
            let mut stats = lock(&shared.stats);
            stats.pings_sent += 1;
            if error.is_some() {
                stats.pings_failed += 1;
            }
        }
        {
            let mut world = lock(&shared.world);
            let Some(hook) = world
                .bases
                .get_mut(base_id)
                .and_then(|b| b.webhooks.iter_mut().find(|h| h.id == hook_id))
            else {
                return false;
            };
            let done = shared.clock.now();
            hook.last_notification_result = Some(match &error {
                None => {
                    json!({ "success": true, "completionTimestamp": iso(done), "durationMs": duration_ms, "retryNumber": attempt })
                }
                Some(message) => json!({
                    "success": false, "error": { "message": message }, "completionTimestamp": iso(done),
                    "durationMs": duration_ms, "retryNumber": attempt, "willBeRetried": will_retry,
                }),
            });
            if error.is_none() {
                hook.last_successful_notification = Some(done);
                return true;
            }
            if !will_retry {
                hook.notifications_enabled = false;
                return true;
            }
        }
        let delay = shared.config.ping_retry_base.saturating_mul(1 << attempt.min(20));
        // Newer ping requests wait for this delivery (pending stays set); only a stop cuts
        // the schedule short.
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped(pinger) => return false,
        }
    }
    true
}

async fn stopped(pinger: &Pinger) {
    while !pinger.stopped.load(Ordering::SeqCst) {
        pinger.wake.notified().await;
    }
}

/// Asks each listed hook of `base_id` for a ping.
pub fn request_pings(shared: &Shared, hook_ids: &[String]) {
    if hook_ids.is_empty() {
        return;
    }
    let pingers = lock(&shared.pingers);
    for id in hook_ids {
        if let Some(p) = pingers.get(id) {
            p.request();
        }
    }
}
