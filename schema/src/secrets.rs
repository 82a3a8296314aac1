//! Opaque secrets handed to clients (refresh tokens, invitation codes): random, and stored
//! only as a SHA-256.

use base64::Engine;
use sha2::{Digest, Sha256};

/// A fresh secret and its hash.
pub fn generate(bytes: usize) -> (String, Vec<u8>) {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = digest(&token);
    (token, hash)
}

pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}
