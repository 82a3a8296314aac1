//! One error type for every handler, mapped to HTTP in one place. The body is always
//! `{"error":{"code","message","details"?}}`; database failures map to stable codes and never
//! carry SQL.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use schema::postgres::{DbError, DbErrorKind, Retryable};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request")]
    BadRequest(String),
    #[error("invalid input")]
    Validation(Value),
    #[error("request body too large")]
    TooLarge,
    #[error("authentication required")]
    Unauthenticated(&'static str),
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict")]
    Conflict(&'static str, String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("internal error")]
    Internal(String),
}

/// The error body every failure answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation(json!({ field: message.into() }))
    }

    fn parts(&self) -> (StatusCode, &'static str, String, Option<Value>) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m.clone(), None),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large".into(),
                None,
            ),
            ApiError::Validation(d) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request is invalid".into(),
                Some(d.clone()),
            ),
            ApiError::Unauthenticated(why) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", (*why).into(), None)
            }
            ApiError::Forbidden => {
                (StatusCode::FORBIDDEN, "forbidden", "this needs a coach or admin".into(), None)
            }
            ApiError::NotFound => {
                (StatusCode::NOT_FOUND, "not_found", "no such resource".into(), None)
            }
            ApiError::Conflict(code, message) => {
                (StatusCode::CONFLICT, code, message.clone(), None)
            }
            ApiError::Db(e) => {
                let constraint = e.constraint().map(|c| json!({ "constraint": c }));
                match e.kind() {
                    DbErrorKind::Unique => (
                        StatusCode::CONFLICT,
                        "already_exists",
                        "a resource with these values already exists".into(),
                        constraint,
                    ),
                    DbErrorKind::Exclusion => (
                        StatusCode::CONFLICT,
                        "conflict",
                        "conflicts with an existing resource".into(),
                        constraint,
                    ),
                    DbErrorKind::ForeignKey => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_reference",
                        "refers to something that does not exist".into(),
                        constraint,
                    ),
                    DbErrorKind::Check | DbErrorKind::NotNull => (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_value",
                        "a value is not allowed".into(),
                        constraint,
                    ),
                    DbErrorKind::NotFound => {
                        (StatusCode::NOT_FOUND, "not_found", "no such resource".into(), None)
                    }
                    DbErrorKind::Conflict => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "busy",
                        "the request collided with another; retry".into(),
                        None,
                    ),
                    DbErrorKind::Timeout => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the database took too long".into(),
                        None,
                    ),
                    DbErrorKind::Unavailable => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "the database is unavailable".into(),
                        None,
                    ),
                    DbErrorKind::Internal => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error".into(),
                        None,
                    ),
                }
            }
            ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".into(), None)
            }
        }
    }
}

impl Retryable for ApiError {
    fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Db(e) if e.is_retryable())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Db(DbError::from(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = ?self, code, "request failed");
        }
        (status, Json(json!({ "error": { "code": code, "message": message, "details": details } })))
            .into_response()
    }
}
