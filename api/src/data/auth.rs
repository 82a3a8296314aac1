use chrono::{DateTime, Utc};
use schema::users::Role;
use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

/// The signed-in user's profile.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    /// user, coach or admin.
    #[schema(value_type = String)]
    pub role: Role,
    pub company_id: Option<Uuid>,
    pub language: String,
    pub bonus_points: i32,
    pub badges: Vec<String>,
    pub level: i32,
    pub has_password: bool,
}

const ME: &str = "SELECT id, email, name, role, company_id, language, bonus_points, badges, level, password_hash IS NOT NULL AS has_password FROM users";

/// A user able to sign in: active and not deleted.
#[derive(Debug, sqlx::FromRow)]
pub struct LoginUser {
    #[sqlx(flatten)]
    pub me: Me,
    pub password_hash: Option<String>,
    pub active: bool,
}

pub async fn user_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> sqlx::Result<Option<LoginUser>> {
    sqlx::query_as(&format!("{ME_LOGIN} WHERE lower(email) = lower($1)"))
        .bind(email)
        .fetch_optional(db)
        .await
}

const ME_LOGIN: &str = "SELECT id, email, name, role, company_id, language, bonus_points, badges, level, password_hash IS NOT NULL AS has_password, password_hash, (status = 'active' AND deleted_at IS NULL) AS active FROM users";

pub async fn me(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Option<Me>> {
    sqlx::query_as(&format!("{ME} WHERE id = $1 AND deleted_at IS NULL"))
        .bind(user)
        .fetch_optional(db)
        .await
}

pub async fn password_hash(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(db)
        .await
        .map(Option::flatten)
}

pub async fn touch_login(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET last_login_at = now() WHERE id = $1")
        .bind(user)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn set_password(db: impl PgExecutor<'_>, user: Uuid, hash: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET password_hash = $2, password_set_at = now() WHERE id = $1")
        .bind(user)
        .bind(hash)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn insert_refresh(
    db: impl PgExecutor<'_>,
    user: Uuid,
    family: Uuid,
    hash: &[u8],
    expires: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(user)
        .bind(family)
        .bind(hash)
        .bind(expires)
        .execute(db)
        .await
        .map(|_| ())
}

#[derive(Debug, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub expired: bool,
    pub spent: bool,
    pub role: Role,
    pub active: bool,
}

/// The token's row, locked for the rotation.
pub async fn refresh_for_update(
    db: impl PgExecutor<'_>,
    hash: &[u8],
) -> sqlx::Result<Option<RefreshRow>> {
    sqlx::query_as(
        "SELECT t.id, t.user_id, t.family_id, t.expires_at <= now() AS expired,
                (t.used_at IS NOT NULL OR t.revoked_at IS NOT NULL) AS spent, u.role,
                (u.status = 'active' AND u.deleted_at IS NULL) AS active
         FROM refresh_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1 FOR UPDATE OF t",
    )
    .bind(hash)
    .fetch_optional(db)
    .await
}

pub async fn mark_used(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

pub async fn revoke_family(db: impl PgExecutor<'_>, family: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .execute(db)
    .await
    .map(|_| ())
}

pub async fn revoke_user(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user)
    .execute(db)
    .await
    .map(|_| ())
}

/// The user an open invitation belongs to, if `code_hash` and `email` match; locked.
pub async fn invitation_for_update(
    db: impl PgExecutor<'_>,
    code_hash: &[u8],
    email: &str,
) -> sqlx::Result<Option<(Uuid, Uuid)>> {
    sqlx::query_as(
        "SELECT i.id, i.user_id FROM password_invitations i JOIN users u ON u.id = i.user_id
         WHERE i.code_hash = $1 AND lower(u.email) = lower($2) AND i.used_at IS NULL AND i.expires_at > now()
           AND u.deleted_at IS NULL AND u.status = 'active'
         FOR UPDATE OF i",
    )
    .bind(code_hash)
    .bind(email)
    .fetch_optional(db)
    .await
}

pub async fn use_invitation(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE password_invitations SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}
