//! Pings that reach a standby: verified there, then passed to the leader through Postgres
//! (NOTIFY on [`WEBHOOK_PING`]), so Airtable may ping a load-balanced URL. The leader
//! LISTENs and treats them as its own pings (a replayed one is still dropped).

use super::*;
use schema::channels::WEBHOOK_PING;

/// What travels on the channel.
#[derive(serde::Serialize, serde::Deserialize)]
struct Forwarded {
    hook: String,
    /// The ping's own timestamp (replays are recognised by it).
    timestamp: Option<String>,
}

impl Inbound {
    /// The hooks a ping is verified against: the leader's live ones, or on a standby those
    /// the leader stored (read at each ping: pings are few, and a re-created hook counts at
    /// once).
    pub(super) async fn known_hooks(&self) -> Vec<(HookKind, Hook)> {
        let live = self.hooks.read().await.clone();
        if !live.is_empty() {
            return live.into_iter().collect();
        }
        let mut stored = Vec::new();
        for kind in HookKind::ALL {
            let Ok(Some(v)) = self.applier.checkpoint(&kind.checkpoint()).await else { continue };
            let secret = stored_secret(&v);
            if let (Some(id), Some(secret)) = (v["id"].as_str(), secret) {
                stored.push((kind, Hook { id: id.to_owned(), secret: secret.into() }));
            }
        }
        stored
    }

    /// A standby passes a verified ping on; false when Postgres could not take it (the
    /// receiver answers 503, and Airtable sends it again).
    pub(super) async fn forward(&self, kind: HookKind, timestamp: Option<String>) -> bool {
        let payload = serde_json::to_string(&Forwarded { hook: kind.name().into(), timestamp })
            .unwrap_or_default();
        match sqlx::query("SELECT pg_notify($1, $2)")
            .bind(WEBHOOK_PING)
            .bind(payload)
            .execute(self.applier.pool())
            .await
        {
            Ok(_) => {
                metrics::counter!("inbound_pings_forwarded_total", "hook" => kind.name())
                    .increment(1);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, hook = kind.name(), "cannot pass a ping to the leader");
                false
            }
        }
    }

    /// The leader's side: pings standbys passed on.
    pub(in crate::inbound) async fn forwarded_pings(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let pool = self.applier.pool().clone();
        let listening = schema::postgres::listen_forever(pool, &[WEBHOOK_PING], |_, payload| {
            let Ok(f) = serde_json::from_str::<Forwarded>(payload) else { return };
            let Some(kind) = HookKind::ALL.into_iter().find(|k| k.name() == f.hook) else {
                return;
            };
            metrics::counter!("inbound_pings_from_standbys_total", "hook" => kind.name())
                .increment(1);
            if self.pings.fresh_stamp(kind, f.timestamp.as_deref()) {
                self.ping(kind);
            }
        });
        tokio::select! {
            _ = listening => {}
            _ = super::super::stopped(&mut shutdown) => {}
        }
    }
}
