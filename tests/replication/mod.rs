//! The logical replication stream against a real PostgreSQL with wal_level=logical.

mod ops;
mod stream;
mod values;
