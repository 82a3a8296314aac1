-- Least privilege, derived from field ownership (schema::registry states the same ownership
-- and a test checks this file against it column by column).

-- Everyone that runs reads reference data and the model.
GRANT SELECT ON companies, goals, mindset_categories, days_of_week, methods, overtuigingen, prompts
    TO coach_api, coach_sync;
GRANT SELECT ON users, programs, program_schedule, method_usage, habit_usage, personal_goals,
    personal_goal_usage, overtuiging_usage, persoonlijke_overtuigingen, program_progress
    TO coach_api, coach_sync;

-- API: full DML on the Postgres-owned operational tables.
GRANT INSERT, UPDATE, DELETE ON programs, program_schedule, method_usage, habit_usage,
    personal_goal_usage, overtuiging_usage, persoonlijke_overtuigingen TO coach_api;
-- Mixed tables: only the Postgres-owned columns. Users are provisioned in Airtable, so the API
-- never inserts or deletes them.
GRANT UPDATE (password_hash, password_set_at, bonus_points, badges, level, last_login_at)
    ON users TO coach_api;
GRANT INSERT (id, user_id, name, description, scheduled_day_ids, archived_at),
      UPDATE (name, description, scheduled_day_ids, archived_at),
      DELETE ON personal_goals TO coach_api;
-- The API records intents; only the daemon reads or purges them.
GRANT INSERT ON sync_outbox TO coach_api;

-- Sync: Airtable-owned tables in full, Airtable-owned columns of mixed tables.
GRANT INSERT, UPDATE, DELETE ON companies, goals, mindset_categories, days_of_week, methods,
    overtuigingen, prompts TO coach_sync;
GRANT INSERT (id, email, name, company_id, role, status, language, deleted_at),
      UPDATE (email, name, company_id, role, status, language, deleted_at),
      DELETE ON users TO coach_sync;
GRANT UPDATE (coach_feedback) ON personal_goals TO coach_sync;
GRANT SELECT, INSERT, UPDATE, DELETE ON airtable_id_map, sync_dead_letter, sync_inbox_events,
    sync_checkpoint TO coach_sync;
GRANT SELECT, INSERT, DELETE ON sync_outbox TO coach_sync;

-- Echo suppression: inbound transactions run under a replication origin. These functions are
-- superuser-only unless granted; granting them needs a superuser, so do it when we are one and
-- otherwise say what to run (cdc check reports it too).
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text),
                                  pg_replication_origin_oid(text),
                                  pg_replication_origin_session_setup(text),
                                  pg_replication_origin_session_reset(),
                                  pg_replication_origin_xact_setup(pg_lsn, timestamptz)
            TO coach_sync;
    ELSE
        RAISE NOTICE 'not a superuser: ask one to GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_oid(text), pg_replication_origin_session_setup(text), pg_replication_origin_session_reset(), pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO coach_sync';
    END IF;
END
$$;

SELECT adopt_objects();
