use crate::config::AuthConfig;
use schema::postgres::PgPool;

/// Everything a handler may use; one typed state, no untyped extensions.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: AuthConfig,
}
