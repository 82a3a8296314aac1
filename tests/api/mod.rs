//! The REST API against a real database.

mod auth;
mod contract;
mod invitations;
mod pipeline;
mod planning;
mod resources;
mod schemathesis;
