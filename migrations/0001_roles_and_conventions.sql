-- Roles, extensions and the conventions every later migration follows.
--
-- Three NOLOGIN group roles; deployments create LOGIN users that are members of them
-- (see README, "Database roles"). Role attributes such as REPLICATION are not inherited
-- through membership, so the daemon's login user needs REPLICATION itself.
--   coach_api       the REST API: DML on what the API owns, nothing else
--   coach_sync      the sync daemon: reads published tables, writes sync tables and
--                   Airtable-owned tables/fields
--   coach_migrator  owns every object; DDL
--
-- The first `cdc migrate` must run as a role with CREATEROLE that owns the database
-- (a superuser locally). Roles are cluster-wide, so creation is idempotent.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coach_migrator') THEN
        CREATE ROLE coach_migrator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coach_api') THEN
        CREATE ROLE coach_api NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'coach_sync') THEN
        CREATE ROLE coach_sync NOLOGIN REPLICATION;
    END IF;
END
$$;

-- The migrating user must be able to hand objects to coach_migrator.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'coach_migrator', 'MEMBER') THEN
        EXECUTE format('GRANT coach_migrator TO %I', current_user);
    END IF;
END
$$;

-- Trusted extensions: creatable by the database owner, no superuser needed.
CREATE EXTENSION IF NOT EXISTS btree_gist;   -- non-overlapping programs per user

REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO coach_migrator;
GRANT USAGE ON SCHEMA public TO coach_api, coach_sync;

-- Both services refuse to start on a database behind the migrations; they read this.
GRANT SELECT ON _sqlx_migrations TO coach_api, coach_sync, coach_migrator;

-- updated_at is kept by the database, never by callers.
CREATE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- Airtable-style link fields are uuid[] columns (links are replaced whole, as in Airtable).
-- This trigger keeps them honest: every element must exist in the referenced table.
-- TG_ARGV: pairs of (column, referenced table).
CREATE FUNCTION assert_links_exist() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    i int := 0;
    col text;
    ref text;
    ids uuid[];
    missing uuid;
BEGIN
    WHILE i < TG_NARGS LOOP
        col := TG_ARGV[i];
        ref := TG_ARGV[i + 1];
        EXECUTE format('SELECT ($1).%I', col) INTO ids USING NEW;
        IF ids IS NOT NULL AND cardinality(ids) > 0 THEN
            EXECUTE format(
                'SELECT x FROM unnest($1) AS x WHERE NOT EXISTS (SELECT 1 FROM %I r WHERE r.id = x) LIMIT 1',
                ref)
            INTO missing USING ids;
            IF missing IS NOT NULL THEN
                RAISE EXCEPTION 'link % in %.% does not exist in %', missing, TG_TABLE_NAME, col, ref
                    USING ERRCODE = 'foreign_key_violation',
                          CONSTRAINT = TG_TABLE_NAME || '_' || col || '_fkey';
            END IF;
        END IF;
        i := i + 2;
    END LOOP;
    RETURN NEW;
END
$$;

-- Every migration ends by calling this, so coach_migrator owns all objects in public.
CREATE FUNCTION adopt_objects() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT c.relname, c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'v', 'm', 'p')
          AND c.relname <> '_sqlx_migrations'
          AND pg_get_userbyid(c.relowner) <> 'coach_migrator'
    LOOP
        IF r.relkind = 'v' THEN
            EXECUTE format('ALTER VIEW %I OWNER TO coach_migrator', r.relname);
        ELSIF r.relkind = 'm' THEN
            EXECUTE format('ALTER MATERIALIZED VIEW %I OWNER TO coach_migrator', r.relname);
        ELSE
            EXECUTE format('ALTER TABLE %I OWNER TO coach_migrator', r.relname);
        END IF;
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS sig
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public'
          AND pg_get_userbyid(p.proowner) <> 'coach_migrator'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO coach_migrator', r.sig);
    END LOOP;
END
$$;

SELECT adopt_objects();
