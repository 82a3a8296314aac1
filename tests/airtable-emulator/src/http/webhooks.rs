//! The webhooks API.

use super::{Handled, Request};
use crate::{error::ApiError, lock, pinger, webhooks::Webhook, Shared};
use serde_json::{json, Value};
use std::sync::Arc;

fn with_hook<T>(
    shared: &Arc<Shared>,
    base: &str,
    hook: &str,
    f: impl FnOnce(&mut Webhook, chrono::DateTime<chrono::Utc>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let now = shared.clock.now();
    let mut world = lock(&shared.world);
    let b = world.base_mut(base)?;
    let h = b.webhooks.iter_mut().find(|h| h.id == hook).ok_or_else(ApiError::model_not_found)?;
    f(h, now)
}

pub fn create(shared: &Arc<Shared>, base: &str, req: &Request) -> Handled {
    let body = req.json()?;
    let now = shared.clock.now();
    let (hook_id, url, out) = {
        let mut world = lock(&shared.world);
        let b = world.base_mut(base)?;
        let hook = Webhook::create(b, &body, now)?;
        let out = json!({ "id": hook.id, "macSecretBase64": hook.secret_base64(), "expirationTime": crate::clock::iso(hook.expiration) });
        let ids = (hook.id.clone(), hook.notification_url.clone());
        b.webhooks.push(hook);
        (ids.0, ids.1, out)
    };
    if url.is_some() {
        let p = pinger::spawn(shared, base.to_owned(), hook_id.clone());
        lock(&shared.pingers).insert(hook_id, p);
    }
    Ok((out, 0))
}

pub fn list(shared: &Arc<Shared>, base: &str) -> Handled {
    let now = shared.clock.now();
    let mut world = lock(&shared.world);
    let b = world.base_mut(base)?;
    Ok((json!({ "webhooks": b.webhooks.iter().map(|h| h.describe(now)).collect::<Vec<_>>() }), 0))
}

pub fn delete(shared: &Arc<Shared>, base: &str, hook: &str) -> Handled {
    {
        let mut world = lock(&shared.world);
        let b = world.base_mut(base)?;
        let before = b.webhooks.len();
        b.webhooks.retain(|h| h.id != hook);
        if b.webhooks.len() == before {
            return Err(ApiError::model_not_found());
        }
    }
    if let Some(p) = lock(&shared.pingers).remove(hook) {
        p.stop();
    }
    Ok((Value::Null, 0))
}

pub fn refresh(shared: &Arc<Shared>, base: &str, hook: &str) -> Handled {
    with_hook(shared, base, hook, |h, now| {
        if !h.is_enabled(now) {
            return Err(ApiError::unprocessable(
                "CANNOT_REFRESH_DISABLED_WEBHOOK",
                "Only active webhooks can be refreshed",
            ));
        }
        h.expiration = now + chrono::Duration::days(crate::webhooks::LIFETIME_DAYS);
        Ok((json!({ "expirationTime": crate::clock::iso(h.expiration) }), 0))
    })
}

pub fn enable(shared: &Arc<Shared>, base: &str, hook: &str, req: &Request) -> Handled {
    let enable = req
        .json()?
        .get("enable")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::invalid_request("enable must be a boolean"))?;
    with_hook(shared, base, hook, |h, _| {
        h.notifications_enabled = enable;
        Ok((Value::Null, 0))
    })
}

pub fn payloads(shared: &Arc<Shared>, base: &str, hook: &str, req: &Request) -> Handled {
    let mut cursor = None;
    let mut limit = None;
    for (k, v) in req.query() {
        match k.as_str() {
            "cursor" => {
                cursor = Some(
                    v.parse::<u64>()
                        .map_err(|_| ApiError::invalid_request("cursor must be a number"))?,
                )
            }
            "limit" => {
                limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| ApiError::invalid_request("limit must be a number"))?,
                )
            }
            _ => {}
        }
    }
    with_hook(shared, base, hook, |h, now| Ok((h.list_payloads(cursor, limit, now)?, 0)))
}
