-- pg ids waiting to be written into the Airtable records their rows were made from. Queued in
-- the transaction that made the row, written in batches of up to 10 in the bulk lane (one
-- request for up to ten new users instead of one each), deleted once written. Until then
-- outbound writes reach the record by its id (airtable_id_map), so nothing is duplicated.
CREATE TABLE sync_pending_stamps (
    table_name  text NOT NULL,
    airtable_id text NOT NULL,
    pg_id       uuid NOT NULL,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, airtable_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON sync_pending_stamps TO coach_sync;

SELECT adopt_objects();
