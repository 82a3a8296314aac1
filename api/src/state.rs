use crate::{
    auth::{access::Access, read_through::ReadThrough},
    config::AuthConfig,
};
use schema::postgres::PgPool;
use std::sync::Arc;

/// Everything a handler may use; one typed state, no untyped extensions.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub auth: AuthConfig,
    /// The hottest reads, pipelined on shared connections; None = the pool serves them.
    pub pipeline: Option<Arc<crate::data::pipeline::Pipeline>>,
    /// Asks the daemon for users Postgres lacks at login; None = off.
    pub read_through: Option<Arc<ReadThrough>>,
    /// Users whose tokens are refused (disabled or deleted since they signed in).
    pub access: Arc<Access>,
}
