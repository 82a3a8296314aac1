//! The Postgres NOTIFY channels the API and the daemon share (read-through for logins), and
//! the daemons among themselves (pings a standby passes to the leader).

/// API -> daemon: an email Postgres lacks (payload: the lower-cased email).
pub const USER_LOOKUP: &str = "coach_user_lookup";
/// Daemon -> API: a user was written (payload: its lower-cased email), sent at commit.
pub const USER_SYNCED: &str = "coach_user_synced";
/// Daemon -> API: Airtable has no such user, or could not be asked (payload: the email).
pub const USER_MISSING: &str = "coach_user_missing";
/// Database -> API: a user's status or deletion changed (payload: the user's id), sent at
/// commit by a trigger; the API re-reads whether that user may still sign requests.
pub const USER_ACCESS: &str = "coach_user_access";
/// Standby daemon -> leader: a verified webhook ping (payload: `{"hook", "timestamp"}`).
pub const WEBHOOK_PING: &str = "coach_webhook_ping";
