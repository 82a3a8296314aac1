//! The REST API against a real database.

mod auth;
mod contract;
mod pipeline;
mod planning;
mod resources;
mod schemathesis;
