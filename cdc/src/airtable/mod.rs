//! Talking to Airtable, shared by both directions: the request budget (one per base and
//! token, with a fast lane for users), the IO client that classifies every response, its
//! configuration, cell conversions, and the binding of mapped names to ids.

pub mod binding;
pub mod budget;
pub mod calls;
pub mod cells;
pub mod client;
pub mod config;
pub mod meta;
pub mod retry;
mod webhooks;

pub use budget::{Budget, Lane};
pub use client::{AirtableClient, AirtableError};
pub use config::AirtableConfig;
