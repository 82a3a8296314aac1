//! Disabled means disabled: the users whose access is gone (disabled or deleted, in Airtable
//! or by hand), kept in memory so every authenticated request checks it without a query.
//! A trigger announces each change of a user's status or deletion (`coach_user_access`); the
//! set is read whole at start and again each time the LISTEN is re-established, so a change
//! missed while it was down counts within a reconnect.

use schema::{channels::USER_ACCESS, postgres::PgPool};
use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
};
use tokio::sync::mpsc;
use uuid::Uuid;

/// What the listener asks the refresher to do.
enum Refresh {
    All,
    One(Uuid),
}

/// The set of users whose tokens are refused, and the task that keeps it current.
pub struct Access {
    revoked: Arc<RwLock<HashSet<Uuid>>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Access {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Access {
    /// Reads the set once (so the first request is already checked), then keeps it current.
    pub async fn start(pool: PgPool) -> sqlx::Result<Self> {
        let revoked = Arc::new(RwLock::new(all_revoked(&pool).await?));
        let (tx, rx) = mpsc::unbounded_channel();
        let listen = {
            let (pool, all, one) = (pool.clone(), tx.clone(), tx);
            tokio::spawn(async move {
                schema::postgres::listen_forever_from(
                    pool,
                    &[USER_ACCESS],
                    || drop(all.send(Refresh::All)),
                    |_, payload| {
                        if let Ok(id) = payload.parse() {
                            let _ = one.send(Refresh::One(id));
                        }
                    },
                )
                .await
            })
        };
        let refresh = tokio::spawn(refresh(pool, rx, revoked.clone()));
        Ok(Self { revoked, tasks: [listen, refresh] })
    }

    /// Whether `user`'s access is gone.
    pub fn is_revoked(&self, user: Uuid) -> bool {
        self.revoked.read().map(|set| set.contains(&user)).unwrap_or(true)
    }
}

async fn all_revoked(pool: &PgPool) -> sqlx::Result<HashSet<Uuid>> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM users WHERE status <> 'active' OR deleted_at IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().collect())
}

/// The whole set again: every inactive user, plus those already refused whose row is gone
/// (deleted outright), minus those active again.
async fn reload(pool: &PgPool, revoked: &RwLock<HashSet<Uuid>>) -> sqlx::Result<()> {
    let known: Vec<Uuid> = revoked.read().map(|s| s.iter().copied().collect()).unwrap_or_default();
    let active: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM users WHERE id = ANY ($1) AND status = 'active' AND deleted_at IS NULL",
    )
    .bind(&known)
    .fetch_all(pool)
    .await?;
    let all = all_revoked(pool).await?;
    let mut set = revoked.write().unwrap_or_else(|p| p.into_inner());
    for id in active {
        set.remove(&id);
    }
    set.extend(all);
    Ok(())
}

/// Applies announced changes; a user whose row is gone stays refused.
async fn refresh(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<Refresh>,
    revoked: Arc<RwLock<HashSet<Uuid>>>,
) {
    while let Some(what) = rx.recv().await {
        let result = match what {
            Refresh::All => reload(&pool, &revoked).await,
            Refresh::One(id) => sqlx::query_scalar::<_, bool>(
                "SELECT status = 'active' AND deleted_at IS NULL FROM users WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&pool)
            .await
            .map(|active| {
                let mut set = revoked.write().unwrap_or_else(|p| p.into_inner());
                if active == Some(true) {
                    set.remove(&id);
                } else {
                    set.insert(id);
                }
            }),
        };
        if let Err(e) = result {
            metrics::counter!("api_access_refresh_errors_total").increment(1);
            tracing::warn!(error = %e, "cannot re-read users' access; retried at the next change or reconnect");
        }
        metrics::gauge!("api_access_revoked_users")
            .set(revoked.read().map(|s| s.len()).unwrap_or(0) as f64);
    }
}
