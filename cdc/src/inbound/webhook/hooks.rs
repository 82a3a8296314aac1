//! The hooks' lifecycle: created, checked and refreshed daily, re-created when they break;
//! the task that keeps each one read.

use super::*;
use schema::mapping::TableId;

/// A payload read refused as if the hook were not there: 404, or the 403 Airtable answers
/// for a model a token cannot see (a missing hook, or a revoked token: the hook check tells).
fn hook_may_be_gone(e: &AirtableError) -> bool {
    e.is_gone()
        || matches!(e, AirtableError::Unauthorized { kind, .. } if kind == "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND")
}

impl Inbound {
    /// Whether mapped table `table` is `kind`'s.
    pub(in crate::inbound) fn covers(&self, kind: HookKind, table: TableId) -> bool {
        (Some(table) == self.users()) == (kind == HookKind::Users)
    }

    /// A webhook's specification: record data of the watched (Airtable-owned) fields of its
    /// tables. Creations and deletions are reported whatever the fields.
    pub(super) async fn spec(&self, kind: HookKind) -> Result<Value, InboundError> {
        let schema = self.schema.read().await;
        let fields = schema.inbound_field_ids(self.applier.mapping(), |t| self.covers(kind, t));
        let mut filters = json!({ "dataTypes": ["tableData"], "watchDataInFieldIds": fields });
        if kind == HookKind::Users {
            let users = self.users().and_then(|u| schema.table_id(u));
            let Some(users) = users else {
                return Err(InboundError::Base("the base has no users table".into()));
            };
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
    pub async fn ensure_hook(&self, kind: HookKind) -> Result<bool, InboundError> {
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
            let secret = stored_secret(s);
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
                        self.hooks
                            .write()
                            .await
                            .insert(kind, Hook { id: id.to_owned(), secret: secret.into() });
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
            return Err(InboundError::Base(format!(
                "Airtable created a webhook without an id or secret: {created}"
            )));
        };
        let secret_bytes =
            base64::engine::general_purpose::STANDARD.decode(secret).map_err(|e| {
                InboundError::Base(format!("the webhook's MAC secret is not base64: {e}"))
            })?;
        let mut batch = Batch::default();
        batch.checkpoints.push((
            kind.checkpoint(),
            json!({ "id": id, "secret": secret, "spec": spec["specification"], "notification_url": spec.get("notificationUrl") }),
        ));
        batch.checkpoints.push((kind.cursor(), json!({ "id": id, "cursor": 1 })));
        self.applier.apply(batch).await?;
        self.hooks
            .write()
            .await
            .insert(kind, Hook { id: id.to_owned(), secret: secret_bytes.into() });
        metrics::counter!("inbound_webhooks_created_total").increment(1);
        tracing::info!(webhook = id, kind = kind.name(), "created the webhook");
        Ok(true)
    }

    /// Keeps the hook alive and applies its payloads: on every ping, on a timer, and once a
    /// day checks (and refreshes) the hook itself.
    pub(in crate::inbound) async fn webhook_task(
        self: Arc<Self>,
        kind: HookKind,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if !self.config.webhooks {
            return;
        }
        let mut checked: Option<Instant> = None;
        // The base hook's gap: it doubles while reads find only echoes of outbound writes
        // (a backlog drain raises one payload per write) and is back at its floor as soon as
        // a read changes anything.
        let floor = match kind {
            HookKind::Users => Duration::ZERO,
            HookKind::Base => self.config.base_webhook_gap,
        };
        let mut gap = floor;
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            if checked.is_none_or(|c| c.elapsed() > Duration::from_secs(24 * 3600)) {
                match self.ensure_hook(kind).await {
                    Ok(recreated) => {
                        checked = Some(Instant::now());
                        if recreated {
                            self.ask_reconcile();
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot set up the webhook; retrying (polling goes on)");
                        if !pause(&mut shutdown, backoff.next_delay()).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            let drained = Instant::now();
            match self.drain_payloads(kind).await {
                Ok(d) if d.broken => checked = None,
                Ok(d) => {
                    backoff.reset();
                    gap = if d.changed > 0 {
                        floor
                    } else {
                        (gap * 2).clamp(floor, self.config.base_webhook_gap_max.max(floor))
                    };
                }
                Err(InboundError::Airtable(e)) if hook_may_be_gone(&e) => {
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
                    if !pause(&mut shutdown, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            }
            if checked.is_none() {
                continue;
            }
            let gap = gap.saturating_sub(drained.elapsed());
            if !gap.is_zero() && !pause(&mut shutdown, gap).await {
                return;
            }
            // Woken by a ping, or by the watch (unread payloads, a hook gone); the hourly
            // wake keeps the daily check on time.
            let pinged = loop {
                let pinged = tokio::select! {
                    _ = self.pinged(kind).notified() => true,
                    _ = tokio::time::sleep(Duration::from_secs(3600)) => false,
                    _ = crate::inbound::stopped(&mut shutdown) => return,
                };
                if !pinged || self.pings.must_read(kind) {
                    break pinged;
                }
                // It came while the last read was on its way: that read answered it.
                metrics::counter!("inbound_pings_covered_total", "hook" => kind.name())
                    .increment(1);
            };
            if pinged && !self.settle(kind, &mut shutdown).await {
                return;
            }
        }
    }

    /// Settled edits: after a ping, waits until the hook has had no ping for its settle
    /// time (SYNC_INBOUND_SETTLE_MS; 0 for users), so a burst of keystrokes is read, and
    /// applied, once as its latest state. A burst that never pauses (outbound writes raise
    /// payloads too) is read after four settle times. False when the daemon stops meanwhile.
    async fn settle(&self, kind: HookKind, shutdown: &mut watch::Receiver<bool>) -> bool {
        let quiet = match kind {
            HookKind::Users => self.config.users_settle,
            HookKind::Base => self.config.settle,
        };
        if quiet.is_zero() {
            return true;
        }
        let deadline = Instant::now() + quiet * 4;
        loop {
            tokio::select! {
                _ = self.pinged(kind).notified() => {
                    if Instant::now() >= deadline {
                        return true;
                    }
                }
                _ = tokio::time::sleep(quiet) => return true,
                _ = crate::inbound::stopped(shutdown) => return false,
            }
        }
    }
}
