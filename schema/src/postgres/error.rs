//! Database errors mapped to stable kinds, so no SQL text ever reaches a client.

use std::fmt;

/// The stable classification of a database failure. Callers decide on the kind; the
/// underlying error is kept as `source` for logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbErrorKind {
    /// 23505: a unique constraint refused a duplicate.
    Unique,
    /// 23503: a referenced row is missing (or still referenced).
    ForeignKey,
    /// 23514, 22xxx: a value the schema does not accept.
    Check,
    /// 23502: a required value is missing.
    NotNull,
    /// 23P01: an exclusion constraint (e.g. overlapping programs).
    Exclusion,
    /// The row asked for does not exist.
    NotFound,
    /// 40001, 40P01: the transaction lost a race; retrying it is safe.
    Conflict,
    /// 57014: a statement exceeded PG_QUERY_TIMEOUT_MS.
    Timeout,
    /// The database could not be reached or is shutting down, or the pool is exhausted.
    Unavailable,
    /// Anything else: a bug or an unexpected state.
    Internal,
}

impl DbErrorKind {
    /// The kind of a driver error, by SQLSTATE (never by message text).
    pub fn of(e: &sqlx::Error) -> DbErrorKind {
        match e {
            sqlx::Error::RowNotFound => DbErrorKind::NotFound,
            sqlx::Error::Database(db) => {
                db.code().as_deref().map(kind_of_sqlstate).unwrap_or(DbErrorKind::Internal)
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DbErrorKind::Unavailable,
            _ => DbErrorKind::Internal,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unique => "unique_violation",
            Self::ForeignKey => "foreign_key_violation",
            Self::Check => "check_violation",
            Self::NotNull => "not_null_violation",
            Self::Exclusion => "exclusion_violation",
            Self::NotFound => "not_found",
            Self::Conflict => "serialization_conflict",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for DbErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A database failure: its kind, the constraint involved (names are ours, safe to show),
/// and the SQLSTATE, with the driver error as source.
#[derive(Debug, thiserror::Error)]
#[error("database error: {kind}{}", constraint.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
pub struct DbError {
    kind: DbErrorKind,
    constraint: Option<String>,
    sqlstate: Option<String>,
    #[source]
    source: Option<sqlx::Error>,
}

impl DbError {
    pub fn new(kind: DbErrorKind) -> Self {
        Self { kind, constraint: None, sqlstate: None, source: None }
    }

    pub fn not_found() -> Self {
        Self::new(DbErrorKind::NotFound)
    }

    pub fn kind(&self) -> DbErrorKind {
        self.kind
    }

    /// The constraint that refused the write, when Postgres named one.
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }

    pub fn sqlstate(&self) -> Option<&str> {
        self.sqlstate.as_deref()
    }

    /// Serialization failures and deadlocks: the whole transaction may be run again.
    pub fn is_retryable(&self) -> bool {
        self.kind == DbErrorKind::Conflict
    }
}

/// SQLSTATE -> kind, per the PostgreSQL error code appendix.
fn kind_of_sqlstate(code: &str) -> DbErrorKind {
    match code {
        "23505" => DbErrorKind::Unique,
        "23503" => DbErrorKind::ForeignKey,
        "23514" => DbErrorKind::Check,
        "23502" => DbErrorKind::NotNull,
        "23P01" => DbErrorKind::Exclusion,
        "40001" | "40P01" => DbErrorKind::Conflict,
        "57014" => DbErrorKind::Timeout,
        // admin/crash shutdown, cannot connect now, too many connections, read-only standby
        "57P01" | "57P02" | "57P03" | "53300" | "25006" => DbErrorKind::Unavailable,
        c if c.starts_with("22") => DbErrorKind::Check,
        c if c.starts_with("08") => DbErrorKind::Unavailable,
        _ => DbErrorKind::Internal,
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        let kind = DbErrorKind::of(&e);
        let (constraint, sqlstate) = match &e {
            sqlx::Error::Database(db) => {
                (db.constraint().map(str::to_owned), db.code().map(|c| c.into_owned()))
            }
            _ => (None, None),
        };
        let class = sqlstate.as_deref().map(|c| c[..2.min(c.len())].to_owned());
        metrics::counter!(
            "db_errors_total",
            "kind" => kind.as_str(),
            "sqlstate_class" => class.unwrap_or_else(|| "none".into())
        )
        .increment(1);
        Self { kind, constraint, sqlstate, source: Some(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_stable_kinds() {
        for (code, kind) in [
            ("23505", DbErrorKind::Unique),
            ("23503", DbErrorKind::ForeignKey),
            ("23514", DbErrorKind::Check),
            ("23502", DbErrorKind::NotNull),
            ("22P02", DbErrorKind::Check),
            ("23P01", DbErrorKind::Exclusion),
            ("40001", DbErrorKind::Conflict),
            ("40P01", DbErrorKind::Conflict),
            ("57014", DbErrorKind::Timeout),
            ("57P01", DbErrorKind::Unavailable),
            ("08006", DbErrorKind::Unavailable),
            ("42P01", DbErrorKind::Internal),
        ] {
            assert_eq!(kind_of_sqlstate(code), kind, "{code}");
        }
    }

    #[test]
    fn display_never_carries_driver_text() {
        let e = DbError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(e.kind(), DbErrorKind::Unavailable);
        assert_eq!(e.to_string(), "database error: unavailable");
        assert_eq!(DbError::from(sqlx::Error::RowNotFound).kind(), DbErrorKind::NotFound);
    }
}
