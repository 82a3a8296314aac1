-- A second destination: the Convex mirror, streamed from its own slot by its own daemon. Dead
-- letters and backfills now say which destination they belong to, so each daemon replays,
-- counts and copies only its own; everything before this is Airtable's.
ALTER TABLE sync_dead_letter
    ADD COLUMN destination text NOT NULL DEFAULT 'airtable'
        CHECK (destination IN ('airtable', 'convex')),
    -- Inbound changes come from Airtable only.
    ADD CONSTRAINT sync_dead_letter_inbound_destination_check
        CHECK (direction = 'outbound' OR destination = 'airtable');

-- One pending dead letter per problem, per destination (0007's index, with the destination).
DROP INDEX sync_dead_letter_problem_idx;
CREATE UNIQUE INDEX sync_dead_letter_problem_idx
    ON sync_dead_letter (destination, direction, (coalesce(table_name, '')), problem_key, error_code)
    WHERE status = 'pending';

ALTER TABLE sync_backfill
    ADD COLUMN destination text NOT NULL DEFAULT 'airtable'
        CHECK (destination IN ('airtable', 'convex'));
DROP INDEX sync_backfill_open_idx;
CREATE INDEX sync_backfill_open_idx ON sync_backfill (destination, id)
    WHERE state IN ('pending', 'running');

SELECT adopt_objects();
