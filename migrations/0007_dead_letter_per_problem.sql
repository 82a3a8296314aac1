-- One pending dead letter per problem: a row that keeps failing the same way (a redelivered
-- transaction, a re-read record) bumps attempts and last_error on its one pending row
-- instead of adding rows. The problem is (direction, table, row, code); a dead letter bound to
-- no row (a malformed payload) is its own problem, told apart by its payload.
ALTER TABLE sync_dead_letter
    ADD COLUMN problem_key text GENERATED ALWAYS AS
        (coalesce(pg_id::text, airtable_record_id, md5(payload::text))) STORED,
    -- Payloads are capped when stored; this is the size of the original when it was.
    ADD COLUMN payload_bytes integer CHECK (payload_bytes >= 0);

-- Older duplicates of a pending problem give way to its newest row.
UPDATE sync_dead_letter d
   SET status = 'discarded', resolved_at = now()
 WHERE status = 'pending'
   AND EXISTS (SELECT 1 FROM sync_dead_letter n
                WHERE n.status = 'pending' AND n.id > d.id
                  AND n.direction = d.direction
                  AND coalesce(n.table_name, '') = coalesce(d.table_name, '')
                  AND n.problem_key = d.problem_key
                  AND n.error_code = d.error_code);

CREATE UNIQUE INDEX sync_dead_letter_problem_idx
    ON sync_dead_letter (direction, (coalesce(table_name, '')), problem_key, error_code)
    WHERE status = 'pending';

SELECT adopt_objects();
