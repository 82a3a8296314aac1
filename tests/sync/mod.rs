//! The daemon's outbound side end to end: Postgres -> stream -> Airtable (the emulator).

mod backfill;
mod cutover;
mod daemon;
mod ha;
mod hardening;
mod inbound;
mod inbound_backstops;
mod inbound_guard;
mod inbound_healing;
mod inbound_settle;
mod inbound_stamps;
mod monitoring;
mod outbound;
