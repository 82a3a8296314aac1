//! The PWA's REST API. It reads and writes Postgres only; Airtable is the daemon's business.
//! Every write is one transaction; every user-owned query is scoped to the caller.

mod app;
pub mod auth;
mod bounds;
mod config;
mod data;
mod error;
mod extract;
mod middleware;
mod routes;
mod state;
pub mod telemetry;

pub use app::{Application, StartError};
pub use config::{AuthConfig, Config};
pub use error::ApiError;
pub use routes::openapi;
pub use state::AppState;
