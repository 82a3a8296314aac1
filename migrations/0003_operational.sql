-- Operational data: written by the PWA through the API, mirrored to Airtable by the daemon.
--
-- Scoping: every user-owned row carries user_id. Child rows repeat their parent's user_id and
-- a composite foreign key (parent_id, user_id) -> parent (id, user_id) makes it impossible for
-- a row to hang under another user's parent, so "scoped to the caller" is one indexed
-- predicate (user_id = $caller) on every hot query.

-- users is mixed: Airtable owns identity and provisioning fields (admins manage users there);
-- Postgres owns credentials and rewards. password_hash is never mapped to Airtable.
CREATE TABLE users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Airtable-owned
    email           text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    name            text,
    company_id      uuid REFERENCES companies (id),
    role            text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'coach', 'admin')),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    language        text NOT NULL DEFAULT 'nl' CHECK (language ~ '^[a-z]{2}$'),
    deleted_at      timestamptz,
    -- Postgres-owned
    password_hash   text,
    password_set_at timestamptz,
    bonus_points    integer NOT NULL DEFAULT 0 CHECK (bonus_points >= 0),
    badges          text[] NOT NULL DEFAULT '{}',
    level           integer NOT NULL DEFAULT 1 CHECK (level >= 1),
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Email is unique case-insensitively; login looks users up by lower(email).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_company_idx ON users (company_id);

-- A program is a user's coaching period. A user's programs never overlap in dates; the
-- database enforces it (EXCLUDE), so concurrent requests cannot race past the check.
CREATE TABLE programs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            text,
    start_date      date NOT NULL,
    end_date        date NOT NULL,
    goal_ids        uuid[] NOT NULL DEFAULT '{}',
    method_ids      uuid[] NOT NULL DEFAULT '{}',
    day_of_week_ids uuid[] NOT NULL DEFAULT '{}',
    motivation      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT programs_dates_check CHECK (end_date >= start_date),
    CONSTRAINT programs_id_user_key UNIQUE (id, user_id),
    CONSTRAINT programs_no_overlap EXCLUDE USING gist (
        user_id WITH =, daterange(start_date, end_date, '[]') WITH &&)
);
CREATE INDEX programs_user_start_idx ON programs (user_id, start_date DESC);

-- The planning: one row per program day with the methods planned for it.
CREATE TABLE program_schedule (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    program_id     uuid NOT NULL,
    user_id        uuid NOT NULL,
    date           date NOT NULL,
    day_of_week_id uuid REFERENCES days_of_week (id),
    method_ids     uuid[] NOT NULL DEFAULT '{}',
    notes          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT program_schedule_program_fkey FOREIGN KEY (program_id, user_id)
        REFERENCES programs (id, user_id) ON DELETE CASCADE,
    CONSTRAINT program_schedule_program_date_key UNIQUE (program_id, date)
);
CREATE INDEX program_schedule_user_date_idx ON program_schedule (user_id, date);

-- A method done by a user, optionally as part of a program's planning.
CREATE TABLE method_usage (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method_id           uuid NOT NULL REFERENCES methods (id),
    program_id          uuid,
    program_schedule_id uuid REFERENCES program_schedule (id) ON DELETE SET NULL,
    used_on             date NOT NULL,
    remark              text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT method_usage_program_fkey FOREIGN KEY (program_id, user_id)
        REFERENCES programs (id, user_id) ON DELETE CASCADE
);
CREATE INDEX method_usage_user_date_idx ON method_usage (user_id, used_on);
-- by-program: latest usage per method of a program; also the progress count.
CREATE INDEX method_usage_program_method_idx ON method_usage (program_id, method_id, used_on DESC)
    WHERE program_id IS NOT NULL;
CREATE INDEX method_usage_schedule_idx ON method_usage (program_schedule_id)
    WHERE program_schedule_id IS NOT NULL;

-- A daily habit ticked off: at most once per habit per day.
CREATE TABLE habit_usage (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    method_id  uuid NOT NULL REFERENCES methods (id),
    date       date NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT habit_usage_user_method_date_key UNIQUE (user_id, method_id, date)
);
CREATE INDEX habit_usage_user_date_idx ON habit_usage (user_id, date);

-- personal_goals is mixed: the user writes the goal in the app (Postgres-owned); a coach
-- answers in Airtable (coach_feedback, Airtable-owned).
CREATE TABLE personal_goals (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (btrim(name) <> ''),
    description       text,
    scheduled_day_ids uuid[] NOT NULL DEFAULT '{}',
    archived_at       timestamptz,
    coach_feedback    text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT personal_goals_id_user_key UNIQUE (id, user_id)
);
CREATE INDEX personal_goals_user_idx ON personal_goals (user_id, created_at);

CREATE TABLE personal_goal_usage (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL,
    personal_goal_id uuid NOT NULL,
    date             date NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT personal_goal_usage_goal_fkey FOREIGN KEY (personal_goal_id, user_id)
        REFERENCES personal_goals (id, user_id) ON DELETE CASCADE,
    CONSTRAINT personal_goal_usage_goal_date_key UNIQUE (personal_goal_id, date)
);
CREATE INDEX personal_goal_usage_user_date_idx ON personal_goal_usage (user_id, date);

-- An overtuiging practised on a day. The seeds had UNIQUE(user_id, overtuiging_id), which
-- cannot express the daily streaks the rewards need; one row per day is the unit instead.
CREATE TABLE overtuiging_usage (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    overtuiging_id uuid NOT NULL REFERENCES overtuigingen (id),
    program_id     uuid,
    date           date NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT overtuiging_usage_program_fkey FOREIGN KEY (program_id, user_id)
        REFERENCES programs (id, user_id) ON DELETE CASCADE,
    CONSTRAINT overtuiging_usage_user_overtuiging_date_key UNIQUE (user_id, overtuiging_id, date)
);
CREATE INDEX overtuiging_usage_user_date_idx ON overtuiging_usage (user_id, date);
CREATE INDEX overtuiging_usage_program_idx ON overtuiging_usage (program_id) WHERE program_id IS NOT NULL;

-- A user's own beliefs, written in the app.
CREATE TABLE persoonlijke_overtuigingen (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    program_id   uuid,
    name         text NOT NULL CHECK (btrim(name) <> ''),
    completed_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT persoonlijke_overtuigingen_program_fkey FOREIGN KEY (program_id, user_id)
        REFERENCES programs (id, user_id) ON DELETE CASCADE
);
CREATE INDEX persoonlijke_overtuigingen_user_idx ON persoonlijke_overtuigingen (user_id, created_at);
CREATE INDEX persoonlijke_overtuigingen_program_idx ON persoonlijke_overtuigingen (program_id)
    WHERE program_id IS NOT NULL;

CREATE TRIGGER users_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER programs_updated_at BEFORE UPDATE ON programs FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER program_schedule_updated_at BEFORE UPDATE ON program_schedule FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER method_usage_updated_at BEFORE UPDATE ON method_usage FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER habit_usage_updated_at BEFORE UPDATE ON habit_usage FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER personal_goals_updated_at BEFORE UPDATE ON personal_goals FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER personal_goal_usage_updated_at BEFORE UPDATE ON personal_goal_usage FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER overtuiging_usage_updated_at BEFORE UPDATE ON overtuiging_usage FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER persoonlijke_overtuigingen_updated_at BEFORE UPDATE ON persoonlijke_overtuigingen FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TRIGGER programs_links BEFORE INSERT OR UPDATE OF goal_ids, method_ids, day_of_week_ids ON programs
    FOR EACH ROW EXECUTE FUNCTION assert_links_exist(
        'goal_ids', 'goals', 'method_ids', 'methods', 'day_of_week_ids', 'days_of_week');
CREATE TRIGGER program_schedule_links BEFORE INSERT OR UPDATE OF method_ids ON program_schedule
    FOR EACH ROW EXECUTE FUNCTION assert_links_exist('method_ids', 'methods');
CREATE TRIGGER personal_goals_links BEFORE INSERT OR UPDATE OF scheduled_day_ids ON personal_goals
    FOR EACH ROW EXECUTE FUNCTION assert_links_exist('scheduled_day_ids', 'days_of_week');

-- Derived progress per program, computed in SQL on demand: planned sessions are the methods
-- planned over the schedule, completed sessions the method usage recorded for the program.
-- Both sides are index lookups by program_id.
CREATE VIEW program_progress AS
SELECT p.id AS program_id,
       p.user_id,
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

SELECT adopt_objects();
