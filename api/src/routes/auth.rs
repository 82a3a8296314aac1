//! Sign-in, token refresh with rotation, the caller's profile, passwords.

use crate::auth::read_through::Outcome;
use crate::{
    auth::{jwt, password, tokens, AuthUser},
    data::auth::{self as db, Me},
    error::{ApiError, ErrorBody},
    extract::ApiJson,
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use chrono::Utc;
use schema::{
    invitations::{self, Invitee},
    postgres::DbError,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "demo@example.com")]
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// One use only: each refresh returns a new one.
    pub refresh_token: String,
    pub user: Me,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

fn too_long(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::invalid(field, format!("must be at most {max} bytes")));
    }
    Ok(())
}

/// Issues a session: an access token and a refresh token in `family`.
async fn session(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    me: Me,
    family: Uuid,
) -> Result<Session, ApiError> {
    let (refresh, hash) = tokens::generate(32);
    let expires = Utc::now()
        + chrono::Duration::from_std(state.auth.refresh_ttl).unwrap_or(chrono::Duration::days(30));
    db::insert_refresh(&mut *tx, me.id, family, &hash, expires).await?;
    let (access, expires_in) = jwt::issue(&state.auth, me.id, me.role)?;
    Ok(Session {
        access_token: access,
        token_type: "Bearer",
        expires_in,
        refresh_token: refresh,
        user: me,
    })
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<Session>, ApiError> {
    too_long("email", &req.email, 320)?;
    too_long("password", &req.password, 1024)?;
    let mut user = db::user_by_email(&state.pool, req.email.trim()).await?;
    // A user missing here may exist in Airtable already: ask the daemon, wait a bounded
    // time, then go on with what Postgres has.
    if let (None, Some(rt)) = (&user, &state.read_through) {
        if req.email.contains('@') && rt.ask(&state.pool, &req.email).await != Outcome::Missing {
            user = db::user_by_email(&state.pool, req.email.trim()).await?;
        }
    }
    let (hash, usable) = match &user {
        Some(u) => (u.password_hash.clone(), u.active),
        None => (None, false),
    };
    let ok = password::verify(hash, req.password).await?;
    let user = match user {
        Some(u) if ok && usable => u,
        _ => return Err(ApiError::Unauthenticated("invalid email or password")),
    };
    let mut tx = state.pool.begin().await.map_err(DbError::from)?;
    db::touch_login(&mut *tx, user.me.id).await?;
    let s = session(&state, &mut tx, user.me, Uuid::new_v4()).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Json(s))
}

/// Trade a refresh token for a new session. Each refresh token works once; presenting a
/// used one revokes every token of its family (it was stolen, or the client is confused).
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<Session>, ApiError> {
    too_long("refresh_token", &req.refresh_token, 256)?;
    let hash = tokens::digest(&req.refresh_token);
    let mut tx = state.pool.begin().await.map_err(DbError::from)?;
    let Some(row) = db::refresh_for_update(&mut *tx, &hash).await? else {
        return Err(ApiError::Unauthenticated("invalid refresh token"));
    };
    if row.spent {
        db::revoke_family(&mut *tx, row.family_id).await?;
        tx.commit().await.map_err(DbError::from)?;
        tracing::warn!(user = %row.user_id, "refresh token reused: family revoked");
        return Err(ApiError::Unauthenticated("refresh token already used; sign in again"));
    }
    if row.expired || !row.active {
        return Err(ApiError::Unauthenticated("refresh token expired; sign in again"));
    }
    db::mark_used(&mut *tx, row.id).await?;
    let me = db::me(&mut *tx, row.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated("invalid refresh token"))?;
    let _ = row.role;
    let s = session(&state, &mut tx, me, row.family_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Json(s))
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> Result<Json<Me>, ApiError> {
    db::me(&state.pool, user.id)
        .await?
        .map(Json)
        .ok_or(ApiError::Unauthenticated("the user no longer exists"))
}

/// A first password with a one-time invitation code, or a new one with the current password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SetPassword {
    Invitation { email: String, code: String, password: String },
    Change { current_password: String, password: String },
}

/// Set a password. Users provisioned in Airtable have none: they set their first with the
/// one-time code a coach issued (`POST /api/auth/invitations`). Signed in, the current
/// password changes it. Either way every refresh token of the user is revoked.
#[utoipa::path(post, path = "/api/auth/set-password", tag = "auth", request_body = SetPassword,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_password(
    State(state): State<AppState>,
    user: Option<AuthUser>,
    ApiJson(req): ApiJson<SetPassword>,
) -> Result<StatusCode, ApiError> {
    match req {
        SetPassword::Invitation { email, code, password } => {
            too_long("email", &email, 320)?;
            too_long("code", &code, 128)?;
            password::check_strength(&password)?;
            let hash = password::hash(password).await?;
            let mut tx = state.pool.begin().await.map_err(DbError::from)?;
            let (invitation, user) =
                db::invitation_for_update(&mut *tx, &tokens::digest(code.trim()), email.trim())
                    .await?
                    .ok_or(ApiError::Unauthenticated("invalid or expired invitation"))?;
            db::set_password(&mut *tx, user, &hash).await?;
            db::use_invitation(&mut *tx, invitation).await?;
            db::revoke_user(&mut *tx, user).await?;
            tx.commit().await.map_err(DbError::from)?;
        }
        SetPassword::Change { current_password, password } => {
            let user = user.ok_or(ApiError::Unauthenticated("sign in to change the password"))?;
            password::check_strength(&password)?;
            let current = db::password_hash(&state.pool, user.id).await?;
            if !password::verify(current, current_password).await? {
                return Err(ApiError::Unauthenticated("the current password is wrong"));
            }
            let hash = password::hash(password).await?;
            let mut tx = state.pool.begin().await.map_err(DbError::from)?;
            db::set_password(&mut *tx, user.id, &hash).await?;
            db::revoke_user(&mut *tx, user.id).await?;
            tx.commit().await.map_err(DbError::from)?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// The user's email, as in Airtable (case does not matter). Give this or `user_id`.
    pub email: Option<String>,
    /// The user's Postgres id. Give this or `email`.
    pub user_id: Option<Uuid>,
    /// How long the code works; default 72 hours, at most 30 days.
    pub valid_hours: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    /// Hand this to the user; it is shown once and stored only hashed.
    pub code: String,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Issue a one-time code with which a user sets a password (coaches and admins only), for a
/// user named by email or id; 404 when Postgres has no such user.
#[utoipa::path(post, path = "/api/auth/invitations", tag = "auth", security(("bearer" = [])), request_body = InviteRequest,
    responses((status = 201, body = Invitation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    staff: AuthUser,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    if !staff.is_staff() {
        return Err(ApiError::Forbidden);
    }
    let hours = req.valid_hours.unwrap_or(72);
    if hours == 0 || hours > 720 {
        return Err(ApiError::invalid("valid_hours", "must be between 1 and 720"));
    }
    let who = match (&req.email, req.user_id) {
        (Some(email), None) => Invitee::Email(email),
        (None, Some(id)) => Invitee::Id(id),
        _ => return Err(ApiError::invalid("email", "give either email or user_id")),
    };
    let valid = chrono::Duration::hours(i64::from(hours));
    let issued = invitations::issue(&state.pool, who, Some(staff.id), valid)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((StatusCode::CREATED, Json(Invitation { code: issued.code, expires_at: issued.expires_at })))
}
