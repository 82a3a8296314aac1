//! What the Convex mirror needs to talk to Convex: its configuration, the IO client of the
//! HTTP functions API with its pure retry logic, rows read from Postgres exactly as the stream
//! decodes them, and the parity check (`cdc verify --destination convex`, and the daemon's).
//!
//! The wire contract (fixed, so either side can be checked on its own): `POST
//! {CONVEX_URL}/api/mutation` with `Authorization: Convex {CONVEX_DEPLOY_KEY}` and
//! `{"path":"mirror:apply","args":{"changes":[…]},"format":"json"}`; each change is
//! `{table, id, version, op, doc}` with `version` the change's commit LSN as a decimal string.
//! `mirror:apply` is a compare-and-set on version (convex/mirror.ts), so a replay or a
//! reorder never regresses a document.

pub mod client;
pub mod config;
pub mod retry;
pub mod rows;
pub mod verify;

pub use client::{ConvexClient, Outcome, WireChange};
pub use config::ConvexConfig;
pub use retry::ConvexError;
