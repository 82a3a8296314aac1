//! Errors in Airtable's documented body shapes and status codes.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 4xx/5xx with the normal `{"error":{"type","message"}}` body.
    Typed { status: StatusCode, kind: &'static str, message: String },
    /// Bad route or junk id: `{"error":"NOT_FOUND"}`.
    NotFound,
    /// 429 with the `errors` array body; optional Retry-After seconds.
    RateLimited { retry_after: Option<u64> },
    /// A gateway error with a non-JSON body.
    BadGateway,
    /// 5xx from fault injection.
    Server(StatusCode),
}

impl ApiError {
    pub fn typed(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self::Typed { status, kind, message: message.into() }
    }
    pub fn unprocessable(kind: &'static str, message: impl Into<String>) -> Self {
        Self::typed(StatusCode::UNPROCESSABLE_ENTITY, kind, message)
    }
    pub fn authentication_required() -> Self {
        Self::typed(StatusCode::UNAUTHORIZED, "AUTHENTICATION_REQUIRED", "Authentication required")
    }
    pub fn model_not_found() -> Self {
        Self::typed(
            StatusCode::FORBIDDEN,
            "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
            "Invalid permissions, or the requested model was not found. Check that both your user and your token have the required permissions, and that the model names and/or ids are correct.",
        )
    }
    pub fn record_not_found() -> Self {
        Self::typed(StatusCode::NOT_FOUND, "MODEL_ID_NOT_FOUND", "Record not found")
    }
    pub fn row_does_not_exist(id: &str) -> Self {
        Self::unprocessable(
            "ROW_DOES_NOT_EXIST",
            format!("Record ID {id} does not exist in this table"),
        )
    }
    pub fn invalid_records(message: impl Into<String>) -> Self {
        Self::unprocessable("INVALID_RECORDS", message)
    }
    pub fn unknown_field(name: &str) -> Self {
        Self::unprocessable("UNKNOWN_FIELD_NAME", format!("Unknown field name: \"{name}\""))
    }
    pub fn invalid_value(field: &str) -> Self {
        Self::unprocessable(
            "INVALID_VALUE_FOR_COLUMN",
            format!("Field \"{field}\" cannot accept the provided value"),
        )
    }
    pub fn computed_field(field: &str) -> Self {
        Self::unprocessable(
            "INVALID_VALUE_FOR_COLUMN",
            format!("Field \"{field}\" cannot accept a value because the field is computed"),
        )
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::unprocessable(
            "INVALID_REQUEST_UNKNOWN",
            format!("Invalid request: parameter validation failed. {}", message.into()),
        )
    }
    pub fn invalid_formula() -> Self {
        Self::unprocessable(
            "INVALID_FILTER_BY_FORMULA",
            "The formula for filtering records is invalid: Invalid formula. Please check your formula text.",
        )
    }
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Typed { status, .. } => *status,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::Server(s) => *s,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Typed { kind, message, .. } => {
                (status, axum::Json(json!({ "error": { "type": kind, "message": message } }))).into_response()
            }
            Self::NotFound => (status, axum::Json(json!({ "error": "NOT_FOUND" }))).into_response(),
            Self::RateLimited { retry_after } => {
                let mut r = (
                    status,
                    axum::Json(json!({ "errors": [{ "error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later" }] })),
                )
                    .into_response();
                if let Some(secs) = retry_after {
                    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                        r.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                r
            }
            Self::BadGateway => (
                status,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
            Self::Server(s) => (
                s,
                axum::Json(json!({ "error": { "type": "SERVER_ERROR", "message": "Try again. If the problem persists, contact support." } })),
            )
                .into_response(),
        }
    }
}
