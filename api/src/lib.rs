//! The PWA's REST API. It reads and writes Postgres only; Airtable is the daemon's business.

mod app;
mod config;
mod routes;
mod state;
pub mod telemetry;

pub use app::{Application, StartError};
pub use config::Config;
pub use state::AppState;
