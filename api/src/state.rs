use crate::{auth::read_through::ReadThrough, config::AuthConfig};
use schema::postgres::PgPool;
use std::sync::Arc;

/// Everything a handler may use; one typed state, no untyped extensions.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: AuthConfig,
    /// Asks the daemon for users Postgres lacks at login; None = off.
    pub read_through: Option<Arc<ReadThrough>>,
}
