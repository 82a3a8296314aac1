//! Access tokens: HS256 JWTs signed with JWT_SECRET, valid for ACCESS_TOKEN_TTL_SECONDS.

use crate::{config::AuthConfig, error::ApiError};
use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schema::users::Role;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// A token for `user` issued at `now`; returns it and its lifetime in seconds.
pub fn issue_at(
    config: &AuthConfig,
    user: Uuid,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(String, i64), ApiError> {
    let ttl = config.access_ttl.as_secs() as i64;
    let claims = Claims { sub: user, role, iat: now.timestamp(), exp: now.timestamp() + ttl };
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(config.jwt_secret.expose_secret()),
    )
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((token, ttl))
}

pub fn issue(config: &AuthConfig, user: Uuid, role: Role) -> Result<(String, i64), ApiError> {
    issue_at(config, user, role, Utc::now())
}

/// The key and rules tokens are verified with: HS256 only, `exp` and `sub` required, no
/// leeway (expired is expired).
pub(crate) fn verifier(secret: &[u8]) -> (DecodingKey, Validation) {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "sub"]);
    (DecodingKey::from_secret(secret), v)
}

/// Checks signature, algorithm and expiry (no leeway: expired is expired).
pub fn verify(config: &AuthConfig, token: &str) -> Result<Claims, ApiError> {
    let (key, validation) = &*config.verifier;
    decode::<Claims>(token, key, validation).map(|d| d.claims).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            ApiError::Unauthenticated("the access token expired; refresh it")
        }
        _ => ApiError::Unauthenticated("invalid access token"),
    })
}
