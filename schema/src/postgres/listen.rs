//! LISTEN that outlives its connection: notifications on some channels are handed to a
//! callback for as long as the caller keeps the future, reconnecting with backoff when the
//! connection is lost (notifications sent meanwhile are lost: callers wait with a bound).

use sqlx::{postgres::PgListener, PgPool};
use std::time::Duration;

/// Calls `on_notify(channel, payload)` for every notification on `channels`; never returns
/// (drop or abort it to stop).
pub async fn listen_forever<F>(pool: PgPool, channels: &[&str], on_notify: F)
where
    F: FnMut(&str, &str),
{
    listen_forever_from(pool, channels, || {}, on_notify).await
}

/// [`listen_forever`], calling `on_listening()` each time the LISTEN is (re)established:
/// from then on nothing is missed, so a caller that keeps state re-reads it there.
pub async fn listen_forever_from<L, F>(
    pool: PgPool,
    channels: &[&str],
    mut on_listening: L,
    mut on_notify: F,
) where
    L: FnMut(),
    F: FnMut(&str, &str),
{
    let mut backoff = Duration::from_millis(200);
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen_all(channels.iter().copied()).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, ?channels, "cannot LISTEN; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        on_listening();
        loop {
            match listener.recv().await {
                Ok(n) => on_notify(n.channel(), n.payload()),
                Err(e) => {
                    tracing::warn!(error = %e, ?channels, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}
