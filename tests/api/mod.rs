//! The REST API against a real database.

mod auth;
mod contract;
mod resources;
mod schemathesis;
