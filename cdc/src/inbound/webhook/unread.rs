//! One request for both hooks: pings can be lost, so every SYNC_WEBHOOK_POLL_MS the daemon
//! lists the base's webhooks once (`GET …/webhooks`) and compares each hook's
//! `cursorForNextPayload` with its stored cursor. Only a hook with unread payloads is read.
//! The same answer says whether the webhooks are healthy (there, enabled, notifying when a
//! URL is set); while they are, the safety polls and reconciles run at their slower,
//! healthy intervals.

use super::*;

/// When the first check of the webhooks runs after start.
const FIRST_CHECK: Duration = Duration::from_secs(5);

impl Inbound {
    pub(in crate::inbound) async fn watch_task(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if !self.config.webhooks {
            return;
        }
        // The first check comes soon after start (every 5 s until both hooks are set up), so
        // healthy webhooks slow the safety polls from the start, not after a whole interval.
        let mut wait = self.config.webhook_poll.min(FIRST_CHECK);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = crate::inbound::stopped(&mut shutdown) => return,
            }
            if self.hooks.read().await.len() < HookKind::ALL.len() {
                // Not set up (yet, or again): not healthy, and nothing to list; look again
                // soon.
                self.set_webhooks_healthy(false);
                wait = self.config.webhook_poll.min(FIRST_CHECK);
                continue;
            }
            wait = self.config.webhook_poll;
            let healthy = match self.watch_once().await {
                Ok(h) => h,
                Err(e) => {
                    metrics::counter!("inbound_errors_total", "task" => "webhook").increment(1);
                    tracing::warn!(error = %e, "cannot list the webhooks; the safety polls speed up");
                    false
                }
            };
            self.set_webhooks_healthy(healthy);
        }
    }

    /// Wakes the hooks with unread payloads; whether both hooks are healthy.
    async fn watch_once(&self) -> Result<bool, InboundError> {
        let listed = self.client.webhooks(Lane::Fast).await?;
        let live = listed["webhooks"].as_array().cloned().unwrap_or_default();
        let known = self.hooks.read().await.clone();
        let mut healthy = known.len() == HookKind::ALL.len();
        for kind in HookKind::ALL {
            let Some(hook) = known.get(&kind) else { continue };
            let Some(h) = live.iter().find(|h| h["id"] == hook.id.as_str()) else {
                // Gone: its task finds out on its next read and re-creates it.
                healthy = false;
                self.pings.force(kind);
                self.pinged(kind).notify_one();
                continue;
            };
            let notifying = self.config.webhook_public_url.is_none()
                || h["areNotificationsEnabled"] == json!(true);
            healthy &= h["isHookEnabled"] == json!(true) && notifying;
            let next = h["cursorForNextPayload"].as_u64().unwrap_or(1);
            let stored = self.stored_cursor(kind, &hook.id).await?;
            if next > stored {
                // With a notification URL, a ping should have come: count it as lost.
                if self.config.webhook_public_url.is_some() {
                    metrics::counter!("inbound_unread_payloads_found_total", "hook" => kind.name())
                        .increment(1);
                }
                self.pings.force(kind);
                self.pinged(kind).notify_one();
            }
        }
        Ok(healthy)
    }
}
