-- No phantom mass deletes: an inbound pass infers a deletion when a record is missing from a
-- listing. When one pass would delete too much of a table at once (an Airtable outage, a
-- pagination bug, a mis-set view), those deletions are held here for an operator
-- (`cdc inbound deletes list|approve|reject`). A held record that reappears leaves by itself;
-- a rejected one is not inferred deleted again until it reappears.
CREATE TABLE sync_held_deletes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name  text NOT NULL,
    airtable_id text NOT NULL,
    pg_id       uuid NOT NULL,
    state       text NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'rejected')),
    held_at     timestamptz NOT NULL DEFAULT now(),
    decided_at  timestamptz,
    CONSTRAINT sync_held_deletes_record_key UNIQUE (table_name, airtable_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON sync_held_deletes TO coach_sync;

SELECT adopt_objects();
