//! What a response means (the client's whole retry logic, in the manner of vector's
//! `RetryLogic`): a pure classification by status and Airtable's error type, and the typed
//! failures the client returns.

use serde_json::Value;

/// How a request failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AirtableError {
    /// Airtable refused the request (4xx): retrying cannot help.
    #[error("Airtable answered {status}: {kind}: {message}")]
    Rejected { status: u16, kind: String, message: String },
    /// Airtable refused the daemon itself: a bad or revoked token, missing scopes, a base the
    /// token cannot see, the plan's monthly quota. No record is at fault.
    #[error("Airtable refused the daemon ({status} {kind}: {message}); check AIRTABLE_TOKEN (scopes data.records:read, data.records:write, schema.bases:read, webhook:manage) and AIRTABLE_BASE_ID")]
    Unauthorized { status: u16, kind: String, message: String },
    /// Transient failures outlasted every attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    /// Not sent: this process does not lead (a standby, or a leader that lost its lock).
    #[error(transparent)]
    Fenced(#[from] crate::leadership::Fenced),
}

impl AirtableError {
    /// The Airtable error type (or a stable code of ours) for dead-letter rows.
    pub fn code(&self) -> String {
        match self {
            AirtableError::Rejected { kind, .. } | AirtableError::Unauthorized { kind, .. } => {
                kind.clone()
            }
            AirtableError::Exhausted { .. } => "RETRIES_EXHAUSTED".into(),
            AirtableError::Fenced(_) => "FENCED".into(),
        }
    }

    pub fn attempts(&self) -> u32 {
        match self {
            AirtableError::Rejected { .. }
            | AirtableError::Unauthorized { .. }
            | AirtableError::Fenced(_) => 1,
            AirtableError::Exhausted { attempts, .. } => *attempts,
        }
    }

    /// The daemon is refused (see [`AirtableError::Unauthorized`]).
    pub fn is_auth(&self) -> bool {
        matches!(self, AirtableError::Unauthorized { .. })
    }

    /// A listing's offset expired (Airtable keeps it for a while): list again.
    pub fn is_expired_listing(&self) -> bool {
        matches!(self, AirtableError::Rejected { kind, .. } if kind == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE")
    }

    /// Airtable could not use a formula (e.g. it names a field by a name it no longer has).
    pub fn is_bad_formula(&self) -> bool {
        matches!(self, AirtableError::Rejected { kind, .. } if kind == "INVALID_FILTER_BY_FORMULA" || kind == "UNKNOWN_FIELD_NAME")
    }

    /// The record (or table) is not there: success for a delete.
    pub fn is_gone(&self) -> bool {
        matches!(self, AirtableError::Rejected { status: 404, .. })
            || matches!(self, AirtableError::Rejected { kind, .. } if kind == "ROW_DOES_NOT_EXIST" || kind == "MODEL_ID_NOT_FOUND")
    }
}

/// What a response means for the request that got it (the client's whole retry logic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// 429 on the per-second limits: wait out the penalty (never probe it), then retry.
    RateLimited,
    /// 5xx: retry with backoff (after `Retry-After` when given).
    Retry,
    /// The daemon itself is refused: 401, 403, the monthly quota's 429. Retrying the same
    /// request now cannot help, and no record is at fault.
    Unauthorized,
    /// Any other 4xx: this request is refused; retrying cannot help.
    Rejected,
}

/// Classifies a response by its status and Airtable's error type. Pure, so it is tested on
/// its own.
pub fn classify(status: u16, kind: &str) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        429 if kind == "PUBLIC_API_BILLING_LIMIT_EXCEEDED" => Verdict::Unauthorized,
        429 => Verdict::RateLimited,
        401 | 403 => Verdict::Unauthorized,
        500..=599 => Verdict::Retry,
        _ => Verdict::Rejected,
    }
}

/// Airtable's error type from any of its three body shapes.
pub(super) fn error_kind(body: &Value) -> (String, String) {
    match body {
        Value::Object(o) => {
            if let Some(e) = o.get("error") {
                match e {
                    Value::String(s) => return (s.clone(), String::new()),
                    Value::Object(eo) => {
                        let kind =
                            eo.get("type").and_then(Value::as_str).unwrap_or("UNKNOWN").to_owned();
                        let msg =
                            eo.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
                        return (kind, msg);
                    }
                    _ => {}
                }
            }
            if let Some(first) = o.get("errors").and_then(Value::as_array).and_then(|a| a.first()) {
                let kind =
                    first.get("error").and_then(Value::as_str).unwrap_or("UNKNOWN").to_owned();
                let msg = first.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
                return (kind, msg);
            }
            ("UNKNOWN".into(), body.to_string())
        }
        _ => ("UNEXPECTED_ERROR".into(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_bodies_in_all_three_shapes() {
        assert_eq!(
            error_kind(&json!({ "error": { "type": "INVALID_RECORDS", "message": "m" } })),
            ("INVALID_RECORDS".into(), "m".into())
        );
        assert_eq!(error_kind(&json!({ "error": "NOT_FOUND" })).0, "NOT_FOUND");
        assert_eq!(
            error_kind(&json!({ "errors": [{ "error": "RATE_LIMIT_REACHED", "message": "x" }] })).0,
            "RATE_LIMIT_REACHED"
        );
        assert_eq!(error_kind(&Value::Null).0, "UNEXPECTED_ERROR");
    }

    #[test]
    fn responses_are_classified_by_status_and_type() {
        assert_eq!(classify(200, ""), Verdict::Success);
        assert_eq!(classify(429, "RATE_LIMIT_REACHED"), Verdict::RateLimited);
        assert_eq!(classify(429, "PUBLIC_API_BILLING_LIMIT_EXCEEDED"), Verdict::Unauthorized);
        assert_eq!(classify(401, "AUTHENTICATION_REQUIRED"), Verdict::Unauthorized);
        assert_eq!(classify(403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"), Verdict::Unauthorized);
        assert_eq!(classify(403, "INVALID_PERMISSIONS"), Verdict::Unauthorized);
        for status in [500, 502, 503, 504] {
            assert_eq!(classify(status, "UNEXPECTED_ERROR"), Verdict::Retry);
        }
        for (status, kind) in [
            (404, "MODEL_ID_NOT_FOUND"),
            (413, "UNKNOWN"),
            (422, "INVALID_VALUE_FOR_COLUMN"),
            (422, "ROW_DOES_NOT_EXIST"),
            (400, "UNKNOWN"),
        ] {
            assert_eq!(classify(status, kind), Verdict::Rejected, "{status} {kind}");
        }
    }
}
