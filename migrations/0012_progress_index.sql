-- GET /api/programs is the hottest read. Two costs went into every one:
-- - program_progress sums the planning's method_ids: with them in an index, that is an
--   index-only scan of one leaf page instead of a heap fetch per planned day;
-- - the API joined programs to program_progress, which reads programs itself: a second
--   lookup of the same row. programs_with_progress is one pass, and program_progress (the
--   sync's derived fields) is now defined by it, so progress has one definition.
CREATE INDEX program_schedule_progress_idx ON program_schedule (program_id) INCLUDE (method_ids);

CREATE VIEW programs_with_progress AS
SELECT p.*,
       coalesce(s.planned, 0)::integer   AS planned_sessions,
       coalesce(u.completed, 0)::integer AS completed_sessions,
       CASE WHEN coalesce(s.planned, 0) = 0 THEN 0
            ELSE round(100.0 * least(u.completed, s.planned) / s.planned, 1)
       END::double precision             AS percent_complete
FROM programs p
LEFT JOIN LATERAL (
    SELECT sum(cardinality(ps.method_ids)) AS planned
    FROM program_schedule ps WHERE ps.program_id = p.id
) s ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS completed
    FROM method_usage mu WHERE mu.program_id = p.id
) u ON true;

CREATE OR REPLACE VIEW program_progress AS
SELECT id AS program_id, user_id, planned_sessions, completed_sessions, percent_complete
FROM programs_with_progress;

GRANT SELECT ON programs_with_progress TO coach_api, coach_sync;

SELECT adopt_objects();
