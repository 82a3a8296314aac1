//! The base's two webhooks, each kept alive (created, re-created when broken, refreshed well
//! before expiry), its pings verified, its payloads applied from its stored cursor:
//! - `users`: scoped to the users table, read in the fast lane at once on every ping;
//! - `base`: everything else, read in the bulk lane at most every 5 s and once its pings
//!   have settled (`settle`), because every outbound write also raises a payload here and
//!   an admin typing raises one per keystroke: reading each at once would cost a request each.
//!   While reads find only such echoes the gap doubles, up to 30 s; a read that changes
//!   anything brings it back to 5 s.
//!
//! Under HA a standby verifies a ping and passes it to the leader (`forward`).
//!
//! Pings can be lost: `unread` lists both hooks in one request on a timer and wakes a hook
//! whose `cursorForNextPayload` is past its stored cursor.
//!
//! Checkpoints: `inbound.webhook.<kind>` holds a hook (id, MAC secret, notification URL,
//! specification); `inbound.webhook.<kind>.cursor` its next payload number, committed in the
//! same transaction as the changes of the payloads before it. Readable only by the daemon's
//! role.

use super::{apply::Batch, pause, payload, Inbound, InboundError};
use crate::airtable::{AirtableError, Lane};
use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, time::Instant};

mod drain;
mod forward;
mod hooks;
mod receiver;
mod unread;

pub use drain::Drained;
pub use receiver::{router, Pings};

/// Which of the two hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookKind {
    Users,
    Base,
}

impl HookKind {
    pub const ALL: [HookKind; 2] = [HookKind::Users, HookKind::Base];

    pub fn name(self) -> &'static str {
        match self {
            HookKind::Users => "users",
            HookKind::Base => "base",
        }
    }

    fn lane(self) -> Lane {
        match self {
            HookKind::Users => Lane::Fast,
            HookKind::Base => Lane::Bulk,
        }
    }

    fn checkpoint(self) -> String {
        format!("inbound.webhook.{}", self.name())
    }

    fn cursor(self) -> String {
        format!("inbound.webhook.{}.cursor", self.name())
    }
}

/// The live hook, for MAC checks and payload reads; its MAC key never prints.
#[derive(Clone, Debug)]
pub struct Hook {
    pub id: String,
    secret: secrecy::SecretSlice<u8>,
}

/// The MAC key of a stored hook checkpoint (`secret`, base64), if it has a usable one.
fn stored_secret(checkpoint: &Value) -> Option<Vec<u8>> {
    checkpoint["secret"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
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
