-- Authentication state: Postgres only, never mirrored to Airtable.

-- Refresh tokens rotate: each use marks the token used and issues the next one in the same
-- family. A used token presented again means it was stolen: the whole family is revoked.
-- Only a SHA-256 of the token is stored.
CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id  uuid NOT NULL,
    token_hash bytea NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- The proof for setting a first password: users are provisioned in Airtable without one; a
-- coach or admin issues a one-time code (POST /api/auth/invitations) and hands it over. The
-- code is stored hashed, expires, and works once. An email address alone is never enough.
CREATE TABLE password_invitations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL UNIQUE,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX password_invitations_user_idx ON password_invitations (user_id);
CREATE INDEX password_invitations_created_by_idx ON password_invitations (created_by);

GRANT SELECT, INSERT, UPDATE, DELETE ON refresh_tokens, password_invitations TO coach_api;

SELECT adopt_objects();
