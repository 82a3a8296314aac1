//! End-to-end tests against a real PostgreSQL (see support/).

mod api;
mod foundation;
mod mirror;
mod ops;
mod replication;
mod sync;
