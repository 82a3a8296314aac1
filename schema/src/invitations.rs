//! One-time invitation codes with which a user provisioned in Airtable sets a first
//! password. Issued by a coach or admin through the API, or by an operator (`cdc admin
//! invite`) for the very first one; stored only hashed.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// Who is invited.
#[derive(Debug, Clone, Copy)]
pub enum Invitee<'a> {
    Id(Uuid),
    /// Matched case-insensitively (the users' email index).
    Email(&'a str),
}

/// A code to hand over: shown once, stored only as its hash.
#[derive(Debug)]
pub struct Issued {
    pub user_id: Uuid,
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

/// The longest an invitation may stay valid.
pub const MAX_VALID: Duration = Duration::days(30);

/// Issues a code for an existing, not deleted user, valid for `valid`; None when there is
/// no such user. `by`: the coach or admin issuing it (None: an operator).
pub async fn issue(
    db: impl PgExecutor<'_>,
    who: Invitee<'_>,
    by: Option<Uuid>,
    valid: Duration,
) -> sqlx::Result<Option<Issued>> {
    let (code, hash) = crate::secrets::generate(12);
    let expires_at = Utc::now() + valid.min(MAX_VALID);
    let (id, email) = match who {
        Invitee::Id(id) => (Some(id), None),
        Invitee::Email(e) => (None, Some(e.trim())),
    };
    let user: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO password_invitations (user_id, code_hash, expires_at, created_by)
         SELECT id, $3, $4, $5 FROM users
         WHERE deleted_at IS NULL AND (id = $1 OR lower(email) = lower($2))
         RETURNING user_id",
    )
    .bind(id)
    .bind(email)
    .bind(&hash)
    .bind(expires_at)
    .bind(by)
    .fetch_optional(db)
    .await?;
    Ok(user.map(|user_id| Issued { user_id, code, expires_at }))
}
