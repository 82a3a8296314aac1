//! Authentication: short-lived access JWTs, rotating refresh tokens stored hashed, argon2id
//! passwords, one-time invitation codes for a first password.

pub mod access;
pub mod jwt;
pub mod password;
pub mod read_through;
/// Opaque secrets (refresh tokens, invitation codes), shared with the operator CLI.
pub use schema::secrets as tokens;

use crate::{error::ApiError, AppState};
use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::request::Parts,
};
use schema::users::Role;
use uuid::Uuid;

/// The authenticated caller. Every user-owned query is scoped to `id`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
}

impl AuthUser {
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthenticated("missing bearer token"))?;
        let claims = jwt::verify(&state.auth, token)?;
        // A user disabled or deleted since the token was issued.
        if state.access.is_revoked(claims.sub) {
            return Err(ApiError::Unauthenticated("this account is disabled"));
        }
        Ok(AuthUser { id: claims.sub, role: claims.role })
    }
}

/// For endpoints that work signed in or not: no Authorization header is None; a bad one is
/// still an error.
impl OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.headers.get(axum::http::header::AUTHORIZATION).is_none() {
            return Ok(None);
        }
        <AuthUser as FromRequestParts<AppState>>::from_request_parts(parts, state).await.map(Some)
    }
}
