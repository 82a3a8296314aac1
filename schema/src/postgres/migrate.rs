//! The versioned, forward-only migrations in `migrations/`, embedded at build time.

use super::DbError;
use sqlx::{migrate::Migrator, PgPool, Row};

/// Every migration this build knows.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The command an operator runs to bring a database up to date.
pub const MIGRATE_COMMAND: &str = "cdc migrate";

/// Why a database cannot be used by this build.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the database has no migrations applied; run `{MIGRATE_COMMAND}` first")]
    Empty,
    #[error(
        "the database is behind: {applied} of {known} migrations applied (next: {next}); run `{MIGRATE_COMMAND}`"
    )]
    Behind { applied: usize, known: usize, next: String },
    #[error(
        "migration {version} failed part-way and left the database dirty; fix it by hand, then run `{MIGRATE_COMMAND}`"
    )]
    Dirty { version: i64 },
    #[error(
        "migration {version} was changed after it was applied (checksum differs); migrations are forward-only: add a new one"
    )]
    Modified { version: i64 },
    #[error(
        "the database has migration {version}, which this build does not know; deploy a newer build"
    )]
    Unknown { version: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("migration failed: {0}")]
    Apply(#[from] sqlx::migrate::MigrateError),
}

/// One applied or pending migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// Applies every pending migration (under sqlx's advisory lock, so concurrent runs are
/// safe) and returns the versions it applied; empty when the database was current.
pub async fn run(pool: &PgPool) -> Result<Vec<MigrationState>, MigrationError> {
    let before = applied_versions(pool).await?;
    MIGRATOR.run(pool).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !before.iter().any(|(v, _, _)| *v == m.version))
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: true,
        })
        .collect())
}

/// Every known migration and whether it is applied.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationState>, MigrationError> {
    let applied = applied_versions(pool).await?;
    Ok(MIGRATOR
        .iter()
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.iter().any(|(v, ok, _)| *v == m.version && *ok),
        })
        .collect())
}

/// Succeeds only when the database has exactly the migrations this build knows, applied
/// cleanly and unmodified. The API and the daemon call this before serving.
pub async fn ensure_current(pool: &PgPool) -> Result<(), MigrationError> {
    let applied = applied_versions(pool).await?;
    if applied.is_empty() {
        return Err(MigrationError::Empty);
    }
    for (version, success, checksum) in &applied {
        if !success {
            return Err(MigrationError::Dirty { version: *version });
        }
        match MIGRATOR.iter().find(|m| m.version == *version) {
            None => return Err(MigrationError::Unknown { version: *version }),
            Some(m) if m.checksum.as_ref() != checksum.as_slice() => {
                return Err(MigrationError::Modified { version: *version })
            }
            Some(_) => {}
        }
    }
    let pending: Vec<_> =
        MIGRATOR.iter().filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version)).collect();
    if let Some(next) = pending.first() {
        return Err(MigrationError::Behind {
            applied: applied.len(),
            known: MIGRATOR.iter().count(),
            next: format!("{}_{}", next.version, next.description),
        });
    }
    Ok(())
}

/// (version, success, checksum) of every applied migration; empty when the bookkeeping
/// table does not exist yet.
async fn applied_versions(pool: &PgPool) -> Result<Vec<(i64, bool, Vec<u8>)>, MigrationError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(DbError::from)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows =
        sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(DbError::from)?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| MigrationError::Db(e.into()))
}
