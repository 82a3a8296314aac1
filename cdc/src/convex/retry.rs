//! What a Convex answer means (the client's whole retry logic, as vector's `RetryLogic`): a
//! pure classification, and the typed failures the client returns.

use serde_json::Value;

/// How a call failed for good.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConvexError {
    /// The function refused the call (`status: error`) or Convex refused the request (4xx):
    /// some change of it is at fault; retrying the same call cannot help.
    #[error("Convex refused the call: {message}")]
    Function { message: String },
    /// Convex refused the daemon itself: a wrong deploy key or deployment.
    #[error("Convex refused the daemon ({message}); check CONVEX_DEPLOY_KEY and CONVEX_URL")]
    Unauthorized { message: String },
    /// Transient failures outlasted every attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
    /// Not sent: this process does not lead.
    #[error(transparent)]
    Fenced(#[from] crate::leadership::Fenced),
}

impl ConvexError {
    /// A stable code for dead-letter rows.
    pub fn code(&self) -> &'static str {
        match self {
            ConvexError::Function { message } if message.contains("too large") => {
                "DOCUMENT_TOO_LARGE"
            }
            ConvexError::Function { .. } => "CONVEX_FUNCTION_ERROR",
            ConvexError::Unauthorized { .. } => "CONVEX_UNAUTHORIZED",
            ConvexError::Exhausted { .. } => "RETRIES_EXHAUSTED",
            ConvexError::Fenced(_) => "FENCED",
        }
    }
}

/// What one answer means for the call that got it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Success(Value),
    /// A function error (HTTP 200, `status: error`) or another 4xx: a change is at fault.
    Refused(String),
    /// 401, 403, 404 (no such deployment): the daemon is refused; no change is at fault.
    Unauthorized(String),
    /// 429, 5xx, a body that is not Convex's: transport trouble, retried with backoff.
    Retry(String),
}

/// Classifies an answer by status and body (`body` None: not JSON).
pub fn classify(status: u16, body: Option<&Value>) -> Verdict {
    let message = |b: Option<&Value>| {
        b.and_then(|b| b.get("errorMessage").or_else(|| b.get("message")))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match status {
        200 => match body.and_then(|b| b.get("status")).and_then(Value::as_str) {
            Some("success") => {
                Verdict::Success(body.and_then(|b| b.get("value")).cloned().unwrap_or(Value::Null))
            }
            Some("error") => Verdict::Refused(message(body)),
            _ => Verdict::Retry(format!(
                "HTTP 200 without a Convex result: {}",
                body.map(Value::to_string).unwrap_or_default()
            )),
        },
        401 | 403 | 404 => Verdict::Unauthorized(format!("HTTP {status} {}", message(body))),
        408 | 429 => Verdict::Retry(format!("HTTP {status}")),
        400..=499 => Verdict::Refused(format!("HTTP {status} {}", message(body))),
        _ => Verdict::Retry(format!("HTTP {status} {}", message(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_classified_by_status_then_body() {
        let ok = json!({ "status": "success", "value": { "applied": 1, "stale": 0 } });
        assert_eq!(classify(200, Some(&ok)), Verdict::Success(json!({ "applied": 1, "stale": 0 })));
        let err =
            json!({ "status": "error", "errorMessage": "Uncaught Error: document too large" });
        assert_eq!(
            classify(200, Some(&err)),
            Verdict::Refused("Uncaught Error: document too large".into())
        );
        assert!(matches!(classify(200, None), Verdict::Retry(_)));
        assert!(
            matches!(classify(401, Some(&json!({ "code": "BadAdminKey", "message": "bad" }))), Verdict::Unauthorized(m) if m.contains("bad"))
        );
        assert!(matches!(classify(404, None), Verdict::Unauthorized(_)));
        for s in [429, 500, 502, 503, 504] {
            assert!(matches!(classify(s, None), Verdict::Retry(_)), "{s}");
        }
        assert!(matches!(classify(400, None), Verdict::Refused(_)));
    }

    #[test]
    fn a_document_too_large_has_its_own_code() {
        assert_eq!(
            ConvexError::Function { message: "change 1: document too large".into() }.code(),
            "DOCUMENT_TOO_LARGE"
        );
        assert_eq!(
            ConvexError::Function { message: "other".into() }.code(),
            "CONVEX_FUNCTION_ERROR"
        );
    }
}
