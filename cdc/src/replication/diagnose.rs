//! Which replication failures are fatal, decided by SQLSTATE (never by message text, which
//! changes with the server's language and version), confirmed against the catalog where one
//! code covers several causes.

use super::stream::{StreamConfig, StreamError};

/// The SQLSTATE of a server error as the replication client reports it: `… (SQLSTATE XXXXX)`.
pub fn sqlstate(reason: &str) -> Option<&str> {
    let at = reason.rfind("(SQLSTATE ")?;
    let code = reason[at + 10..].strip_suffix(')').or_else(|| reason.get(at + 10..at + 15))?;
    (code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(code)
}

/// The fatal condition behind a failed session, if it is one.
pub async fn fatal(config: &StreamConfig, reason: &str) -> Option<StreamError> {
    match sqlstate(reason)? {
        // insufficient_privilege, invalid_authorization_specification, invalid_password.
        "42501" | "28000" | "28P01" => Some(StreamError::NotAllowed(reason.to_owned())),
        // undefined_object: the slot or the publication; object_not_in_prerequisite_state:
        // among others, an invalidated slot. The catalog tells which.
        "42704" | "55000" => catalog(config).await,
        _ => None,
    }
}

async fn catalog(config: &StreamConfig) -> Option<StreamError> {
    let client = match crate::postgres::connect(&config.conn, &config.application_name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot inspect the slot after a replication error");
            return None;
        }
    };
    match crate::postgres::slot::status(&client, &config.slot).await {
        Ok(None) => return Some(StreamError::SlotMissing { slot: config.slot.clone() }),
        Ok(Some(s)) if s.wal_status.as_deref() == Some("lost") => {
            return Some(StreamError::SlotLost { slot: config.slot.clone() })
        }
        Ok(Some(_)) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the slot's status"),
    }
    match crate::postgres::publication::tables(&client, &config.publication).await {
        Ok(None) => {
            Some(StreamError::PublicationMissing { publication: config.publication.clone() })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_read_from_the_clients_error_text() {
        assert_eq!(
            sqlstate("replication slot \"x\" does not exist (SQLSTATE 42704)"),
            Some("42704")
        );
        assert_eq!(sqlstate("FATAL: ... (SQLSTATE 28P01)"), Some("28P01"));
        assert_eq!(sqlstate("error (SQLSTATE 42000)"), Some("42000"));
        assert_eq!(sqlstate("connection reset by peer"), None);
        assert_eq!(sqlstate("(SQLSTATE 1)"), None);
    }
}
