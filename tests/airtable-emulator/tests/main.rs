//! The emulator over HTTP, as a client sees it.

mod support;

mod binary;
mod faults;
mod limits;
mod list;
mod meta_admin;
mod pyairtable;
mod records;
mod schema_writes;
mod upsert;
mod webhooks;
