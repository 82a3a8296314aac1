//! The REST API against a real database.

mod auth;
mod contract;
mod pipeline;
mod resources;
mod schemathesis;
