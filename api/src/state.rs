use crate::{
    auth::{access::Access, read_through::ReadThrough},
    config::AuthConfig,
};
use schema::postgres::PgPool;
use std::{ops::Deref, sync::Arc};

/// Everything a handler may use; one typed state, no untyped extensions. Cloned for every
/// request (axum's `State`), so a clone is one reference count, not a copy of each part
/// (the JWT secret among them).
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

pub struct Parts {
    pub pool: PgPool,
    pub auth: AuthConfig,
    /// The hottest reads, pipelined on shared connections; None = the pool serves them.
    pub pipeline: Option<Arc<crate::data::pipeline::Pipeline>>,
    /// Asks the daemon for users Postgres lacks at login; None = off.
    pub read_through: Option<Arc<ReadThrough>>,
    /// Users whose tokens are refused (disabled or deleted since they signed in).
    pub access: Arc<Access>,
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }
}

impl Deref for AppState {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}
