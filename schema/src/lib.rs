//! The shared model of the habit-coaching backend.
//!
//! - [`registry`]: every table, who owns each of its fields (Postgres or Airtable), and the
//!   ordering the sync needs.
//! - [`mapping`]: the Postgres -> Airtable mapping (`schema/mapping.toml`).
//! - [`mirror`]: the Postgres -> Convex mirror (`schema/convex.toml`).
//! - [`channels`]: NOTIFY channels shared by the API and the daemon.
//! - [`postgres`]: the Postgres runtime both processes use: pool from the environment
//!   contract, retrying transactions, stable error kinds, migrations and readiness.

pub mod channels;
pub mod env;
pub mod invitations;
pub mod limits;
pub mod mapping;
pub mod metrics;
pub mod mirror;
pub mod outbox;
pub mod postgres;
pub mod registry;
pub mod secrets;
pub mod shutdown;
pub mod users;
