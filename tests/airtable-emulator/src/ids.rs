//! Airtable ids: a 3-letter prefix and 14 alphanumerics (17 characters).

use rand::{distr::Alphanumeric, Rng};

pub fn new_id(prefix: &str) -> String {
    let tail: String = rand::rng().sample_iter(&Alphanumeric).take(14).map(char::from).collect();
    format!("{prefix}{tail}")
}

/// Whether `s` looks like an id with `prefix` (how clients tell ids from names).
pub fn is_id(s: &str, prefix: &str) -> bool {
    s.len() == 17 && s.starts_with(prefix) && s[3..].chars().all(|c| c.is_ascii_alphanumeric())
}
