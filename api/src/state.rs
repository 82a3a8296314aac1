use crate::config::AuthConfig;
use schema::postgres::PgPool;
use std::time::Duration;

/// Everything a handler may use; one typed state, no untyped extensions.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: AuthConfig,
    pub read_through_wait: Duration,
}
