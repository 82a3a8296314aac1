//! `cdc`: the sync daemon and the operator CLI around it. Both directions, in the order the
//! data flows:
//!
//! **Outbound, Postgres to Airtable**
//! 1. [`replication`]: the slot is read through pgoutput ([`replication::pgoutput`] frames,
//!    the decoder turns them into typed [`replication::Event`]s; decoding is total), and the
//!    [`replication::Stream`] hands each committed transaction, in commit order, to a
//!    destination and confirms to the slot only what the destination acknowledged.
//! 2. [`destination`]: the [`destination::Destination`] contract (at-least-once, streamed,
//!    acknowledged by LSN; typed errors decide retry, pause, isolate or stop), and its sinks.
//! 3. [`destination::airtable`]: intake (coalesced pending writes) → flush → records and
//!    links → writes and dead letters → reconcile.
//! 4. [`airtable`]: what both directions share to talk to Airtable: the request budget, the
//!    IO client and its retry logic, cell conversions.
//!
//! **Outbound, Postgres to Convex** (the mirror, its own daemon on its own slot)
//! 1. The same [`replication::Stream`], into [`destination::convex`]: changes coalesced per
//!    row, sent as `mirror:apply` calls at their commit LSN (a compare-and-set in Convex),
//!    refused calls bisected to dead letters, backfills at a version read before each chunk.
//! 2. [`convex`]: the client and its retry logic, rows read as the stream decodes them, parity.
//!
//! **Inbound, Airtable to Postgres**
//! 1. [`inbound::webhook`]: pings received and verified, hooks kept alive, payloads drained
//!    from their cursor; [`inbound`]'s polls and reconciles as the safety net; the users
//!    fast lane and the login read-through.
//! 2. [`inbound::apply`]: one transaction per batch under the inbound replication origin (so
//!    the outbound stream never echoes it), only Airtable-owned columns written.
//!
//! **Around them**: [`run`] wires a daemon ([`run::Daemon`]) from its configuration
//! ([`config`]); [`postgres`] holds the daemon's own SQL (slot, publication, checks, the
//! dead-letter writer); [`ops`] serves metrics, health and readiness; [`cli`], [`dlq`] and
//! [`migrate`] are the operator commands; [`backoff`] is the one retry policy;
//! [`telemetry`] the logs.

pub mod airtable;
pub mod backfill;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod convex;
pub mod cutover;
pub mod destination;
pub mod dlq;
pub mod inbound;
pub mod leadership;
pub mod ops;
pub mod postgres;
pub mod replicated;
pub mod replication;
pub mod run;
pub mod telemetry;
