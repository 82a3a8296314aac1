-- Reference data: content managed by admins in Airtable. Every field here is owned by
-- Airtable; only the sync daemon writes these tables, the API only reads them.
--
-- deleted_at: a record deleted in Airtable is deleted here too, unless Postgres rows still
-- reference it; then it is soft-deleted (deleted_at set) so history keeps its meaning.
-- Link fields (Airtable multipleRecordLinks) are uuid[] columns checked by
-- assert_links_exist(); a link array is replaced whole, as Airtable does.

CREATE TABLE companies (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (btrim(name) <> ''),
    -- The code users type at sign-up to find their employer (GET /api/companies/lookup).
    code        text NOT NULL CHECK (btrim(code) <> ''),
    is_active   boolean NOT NULL DEFAULT true,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX companies_code_key ON companies (lower(code)) WHERE deleted_at IS NULL;

CREATE TABLE goals (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (btrim(name) <> ''),
    description text,
    sort_order  integer NOT NULL DEFAULT 0,
    is_active   boolean NOT NULL DEFAULT true,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mindset_categories (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (btrim(name) <> ''),
    description text,
    sort_order  integer NOT NULL DEFAULT 0,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Maandag..Zondag; iso_day 1 = Monday, as extract(isodow) returns.
CREATE TABLE days_of_week (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (btrim(name) <> ''),
    iso_day     smallint NOT NULL UNIQUE CHECK (iso_day BETWEEN 1 AND 7),
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- A method is an exercise; kind 'habit' marks the daily habits of GET /api/methods?kind=habit
-- (the old api/methods/habits.ts).
CREATE TABLE methods (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                 text NOT NULL CHECK (btrim(name) <> ''),
    description          text,
    kind                 text NOT NULL DEFAULT 'method' CHECK (kind IN ('method', 'habit')),
    duration_minutes     integer CHECK (duration_minutes >= 0),
    media_url            text,
    goal_ids             uuid[] NOT NULL DEFAULT '{}',
    mindset_category_ids uuid[] NOT NULL DEFAULT '{}',
    sort_order           integer NOT NULL DEFAULT 0,
    is_active            boolean NOT NULL DEFAULT true,
    deleted_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX methods_goal_ids_idx ON methods USING gin (goal_ids);
CREATE INDEX methods_kind_idx ON methods (kind, sort_order) WHERE deleted_at IS NULL;

-- Overtuigingen (beliefs) the app offers, grouped by mindset category, linked to goals.
CREATE TABLE overtuigingen (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name                text NOT NULL CHECK (btrim(name) <> ''),
    description         text,
    mindset_category_id uuid REFERENCES mindset_categories (id),
    goal_ids            uuid[] NOT NULL DEFAULT '{}',
    -- Order in which a user works through them (the seeds' "levels").
    level               smallint NOT NULL DEFAULT 1 CHECK (level >= 1),
    sort_order          integer NOT NULL DEFAULT 0,
    deleted_at          timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX overtuigingen_goal_ids_idx ON overtuigingen USING gin (goal_ids);
CREATE INDEX overtuigingen_category_idx ON overtuigingen (mindset_category_id);

-- Prompts and static configuration: one row per key. category 'config' rows carry settings
-- the PWA reads at start (the seeds' "prompts/static configuration").
CREATE TABLE prompts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key         text NOT NULL UNIQUE CHECK (key ~ '^[a-z0-9_.-]+$'),
    category    text NOT NULL DEFAULT 'prompt' CHECK (category IN ('prompt', 'config')),
    title       text,
    body        text NOT NULL,
    deleted_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER companies_updated_at BEFORE UPDATE ON companies FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER goals_updated_at BEFORE UPDATE ON goals FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER mindset_categories_updated_at BEFORE UPDATE ON mindset_categories FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER days_of_week_updated_at BEFORE UPDATE ON days_of_week FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER methods_updated_at BEFORE UPDATE ON methods FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER overtuigingen_updated_at BEFORE UPDATE ON overtuigingen FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER prompts_updated_at BEFORE UPDATE ON prompts FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TRIGGER methods_links BEFORE INSERT OR UPDATE OF goal_ids, mindset_category_ids ON methods
    FOR EACH ROW EXECUTE FUNCTION assert_links_exist('goal_ids', 'goals', 'mindset_category_ids', 'mindset_categories');
CREATE TRIGGER overtuigingen_links BEFORE INSERT OR UPDATE OF goal_ids ON overtuigingen
    FOR EACH ROW EXECUTE FUNCTION assert_links_exist('goal_ids', 'goals');

SELECT adopt_objects();
