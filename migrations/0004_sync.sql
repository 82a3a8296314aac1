-- Sync bookkeeping. The outbound checkpoint is the replication slot's confirmed LSN and is
-- deliberately NOT stored here: a second checkpoint could only disagree with the slot.

-- Postgres id <-> Airtable record id, per table. Not published: writing it must not loop.
CREATE TABLE airtable_id_map (
    table_name         text NOT NULL,
    pg_id              uuid NOT NULL,
    airtable_record_id text NOT NULL CHECK (airtable_record_id ~ '^rec[A-Za-z0-9]{14}$'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, pg_id),
    CONSTRAINT airtable_id_map_record_key UNIQUE (table_name, airtable_record_id)
);

-- Intents that are not plain row mirrors (resync, dead-letter replay, derived progress).
-- Published: the daemon sees them in the replication stream, in commit order, so they need
-- no polling; delivered rows are purged.
CREATE TABLE sync_outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('resync', 'replay', 'progress')),
    table_name text NOT NULL,
    pg_id      uuid,
    payload    jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What could not be synced, in either direction, kept for an operator (cdc dlq ...).
CREATE TABLE sync_dead_letter (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    direction          text NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    table_name         text,
    pg_id              uuid,
    airtable_record_id text,
    operation          text NOT NULL,
    payload            jsonb NOT NULL,
    error_code         text NOT NULL,
    error_message      text NOT NULL,
    attempts           integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'replayed', 'discarded')),
    first_failed_at    timestamptz NOT NULL DEFAULT now(),
    last_failed_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at        timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_dead_letter_resolved_check
        CHECK ((status = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX sync_dead_letter_pending_idx ON sync_dead_letter (direction, first_failed_at)
    WHERE status = 'pending';
CREATE INDEX sync_dead_letter_row_idx ON sync_dead_letter (table_name, pg_id);

-- Inbound deliveries already applied (webhook id + payload number, poll record + modified
-- time); the primary key makes a duplicate delivery a no-op.
CREATE TABLE sync_inbox_events (
    source     text NOT NULL,
    event_key  text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_key)
);
CREATE INDEX sync_inbox_events_applied_idx ON sync_inbox_events (applied_at);

-- Inbound cursors: webhook id/secret/cursor, poll high-water marks. One row per name.
CREATE TABLE sync_checkpoint (
    name       text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER airtable_id_map_updated_at BEFORE UPDATE ON airtable_id_map FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER sync_dead_letter_updated_at BEFORE UPDATE ON sync_dead_letter FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER sync_checkpoint_updated_at BEFORE UPDATE ON sync_checkpoint FOR EACH ROW EXECUTE FUNCTION set_updated_at();

SELECT adopt_objects();
