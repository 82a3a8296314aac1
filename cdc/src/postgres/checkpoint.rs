//! `sync_checkpoint`: named JSON values the daemon and the operator commands keep (poll
//! cursors, the mapping's outbound shape, the cutover's progress and the base's ids).

use serde_json::Value;

pub async fn read<'e>(db: impl sqlx::PgExecutor<'e>, name: &str) -> sqlx::Result<Option<Value>> {
    sqlx::query_scalar("SELECT value FROM sync_checkpoint WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await
}

pub async fn write<'e>(
    db: impl sqlx::PgExecutor<'e>,
    name: &str,
    value: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO sync_checkpoint (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(name)
    .bind(value)
    .execute(db)
    .await
    .map(drop)
}
