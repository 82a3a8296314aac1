-- High availability: one row per slot naming the process that leads its daemons, and the
-- epoch that fences a deposed one. The leader holds a session advisory lock (keyed by the
-- slot) and bumps the epoch under it; a leader checks its epoch before each flush, so one
-- whose lock was lost (or whose epoch moved on) stops writing to Airtable. released_at is set by a leader that
-- stepped down cleanly: its successor need not wait out a lease.
CREATE TABLE sync_leader (
    slot_name   text PRIMARY KEY,
    epoch       bigint NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    ops_addr    text,
    backend_pid integer NOT NULL,
    since       timestamptz NOT NULL DEFAULT now(),
    -- Renewed by the leader's lock check (every SYNC_LEADER_CHECK_MS): a standby ends a
    -- lock session whose leader stopped checking (a partition the server has not noticed).
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- Until when Airtable refuses the base after a 429 the leader got (its heartbeat and its
    -- release write it): a successor sends nothing before.
    penalty_until timestamptz,
    released_at timestamptz
);

GRANT SELECT, INSERT, UPDATE ON sync_leader TO coach_sync;

SELECT adopt_objects();
