//! The one reader of the environment contract for every binary: a variable is unset when
//! empty, and a value that does not parse names the variable (never the value's secrets).

use crate::postgres::ConfigError;
use std::{str::FromStr, time::Duration};

/// An environment variable, unset when empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A number from the environment, `default` when unset.
pub fn number<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
            var: name,
            reason: format!("expected a number, got {v:?}"),
        }),
    }
}

/// A duration in milliseconds from the environment, `default` (ms) when unset.
pub fn millis(name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    number(name, default).map(Duration::from_millis)
}
