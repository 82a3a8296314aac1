//! `cdc`: the sync daemon and the operator CLI around it.
//!
//! - [`replication`]: the logical replication source (pgoutput decoding, the stream).
//! - [`destination`]: where committed changes go, behind the [`destination::Destination`] contract.
//! - [`postgres`]: slots, the publication, checks.

pub mod airtable;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod destination;
pub mod dlq;
pub mod inbound;
pub mod migrate;
pub mod ops;
pub mod postgres;
pub mod replication;
pub mod run;
pub mod telemetry;
