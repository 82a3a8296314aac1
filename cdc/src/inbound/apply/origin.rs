//! The applier's one connection, its session under its writer's replication origin.

use super::*;

impl Applier {
    /// The dedicated connection, its session under the inbound origin.
    pub(super) async fn connection(
        slot: &mut Option<PgConnection>,
        pool: &PgPool,
        writer: Writer,
    ) -> Result<(), ApplyError> {
        if slot.is_some() {
            return Ok(());
        }
        let mut conn = pool.acquire().await?.detach();
        // Origins are cluster-wide and each is active in one session at a time: one per
        // database, so daemons of two databases on one cluster do not collide. The stream
        // skips `coach_inbound` and `coach_inbound_*` alike.
        let database: String =
            sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await?;
        let origin = match writer {
            Writer::Daemon => format!("{INBOUND_ORIGIN}_{database}"),
            Writer::Operator => format!("{INBOUND_ORIGIN}_{database}_cli"),
        };
        sqlx::query(
            "SELECT pg_replication_origin_create($1) WHERE pg_replication_origin_oid($1) IS NULL",
        )
        .bind(&origin)
        .execute(&mut conn)
        .await
        .map_err(ApplyError::Origin)?;
        sqlx::query("SELECT pg_replication_origin_session_setup($1)")
            .bind(&origin)
            .execute(&mut conn)
            .await
            .map_err(|e| match e.as_database_error().and_then(|d| d.code()).as_deref() {
                // object_in_use: the origin is active in another session.
                Some("55006") => ApplyError::OriginBusy(origin.clone()),
                _ => ApplyError::Origin(e),
            })?;
        *slot = Some(conn);
        Ok(())
    }
}
