//! `cdc`: the sync daemon and the operator CLI around it.

pub mod cli;
pub mod migrate;
pub mod telemetry;
