-- Backfills: the one path that copies existing rows to Airtable (first start on a database
-- with rows, a table or column added to the mapping, `cdc backfill`, `cdc slot recover`).
-- A job reads its table in primary-key chunks bracketed by watermarks in the replication
-- stream (DBLog); last_key is the resume point, saved before the slot is confirmed past the
-- chunk. Not published: its own bookkeeping must not stream.
CREATE TABLE sync_backfill (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name   text NOT NULL,
    -- Only these mapped columns (a column added to the mapping); NULL = every mapped column.
    columns      text[],
    -- An operator's filter (`cdc backfill --where`), checked when the job is requested.
    predicate    text,
    reason       text NOT NULL
                 CHECK (reason IN ('initial', 'mapping', 'requested', 'slot_recover', 'repair')),
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'running', 'done', 'cancelled')),
    last_key     uuid,
    rows_done    bigint NOT NULL DEFAULT 0 CHECK (rows_done >= 0),
    -- Rows to do when the job started (an estimate: the table moves meanwhile).
    rows_total   bigint CHECK (rows_total >= 0),
    -- After the last chunk, delete Airtable records whose row is gone (a lost slot missed
    -- the deletes).
    reconcile    boolean NOT NULL DEFAULT false,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_backfill_finished_check
        CHECK ((state IN ('done', 'cancelled')) = (finished_at IS NOT NULL))
);
CREATE INDEX sync_backfill_open_idx ON sync_backfill (id) WHERE state IN ('pending', 'running');
CREATE TRIGGER sync_backfill_updated_at BEFORE UPDATE ON sync_backfill
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A backfill requested while the daemon runs reaches it through the stream, in order.
ALTER TABLE sync_outbox DROP CONSTRAINT sync_outbox_kind_check;
ALTER TABLE sync_outbox ADD CONSTRAINT sync_outbox_kind_check
    CHECK (kind IN ('resync', 'replay', 'progress', 'backfill'));

-- Derived progress comes from the stream: a deleted or moved planning or usage row must say
-- which program it belonged to, so their old rows are logged whole.
ALTER TABLE program_schedule REPLICA IDENTITY FULL;
ALTER TABLE method_usage REPLICA IDENTITY FULL;

GRANT SELECT, INSERT, UPDATE ON sync_backfill TO coach_sync;

SELECT adopt_objects();
