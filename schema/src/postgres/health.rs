//! Readiness: Postgres answers and its schema is the one this build expects.

use super::migrate;
use serde::Serialize;
use sqlx::PgPool;

/// What a readiness probe reports. `problems` is empty when ready; each entry is safe to
/// show (no SQL text, no credentials).
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub postgres: bool,
    pub migrations_current: bool,
    pub problems: Vec<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.problems.is_empty()
    }
}

/// `SELECT 1`, then the migration check.
pub async fn readiness(pool: &PgPool) -> Readiness {
    let mut problems = Vec::new();
    let postgres = match sqlx::query("SELECT 1").execute(pool).await {
        Ok(_) => true,
        Err(e) => {
            let e = super::DbError::from(e);
            problems.push(format!("postgres: {e}"));
            false
        }
    };
    let migrations_current = postgres
        && match migrate::ensure_current(pool).await {
            Ok(()) => true,
            Err(e) => {
                problems.push(format!("migrations: {e}"));
                false
            }
        };
    Readiness { postgres, migrations_current, problems }
}
