//! End-to-end tests against a real PostgreSQL (see support/).

mod foundation;
mod replication;
mod sync;
