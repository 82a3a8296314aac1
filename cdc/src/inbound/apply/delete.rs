//! Deletions: rows of records Airtable no longer has are deleted, or soft-deleted while
//! something still refers to them.

use super::*;
use schema::mapping::TableId;
use schema::postgres::DbErrorKind;

impl Applier {
    pub(super) async fn delete(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        table: TableId,
        record_id: &str,
        applied: &mut Applied,
    ) -> Result<(), ApplyError> {
        let t = &self.mapping.tables[table];
        if !t.table.rows_owned_by_airtable() {
            applied.ignored += 1;
            metrics::counter!("inbound_changes_ignored_total", "table" => t.table.name)
                .increment(1);
            return Ok(());
        }
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT pg_id FROM airtable_id_map WHERE table_name = $1 AND airtable_record_id = $2",
        )
        .bind(t.table.name)
        .bind(record_id)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = id else {
            // Never known here, or already deleted: nothing to do.
            applied.unchanged += 1;
            return Ok(());
        };
        let name = quote_ident(t.table.name);
        let mut checks = Vec::new();
        for (rt, rc, array) in self.catalog.referrers.get(t.table.name).into_iter().flatten() {
            let (rt, rc) = (quote_ident(rt), quote_ident(rc));
            checks.push(if *array {
                format!("EXISTS (SELECT 1 FROM {rt} WHERE $1 = ANY ({rc}))")
            } else {
                format!("EXISTS (SELECT 1 FROM {rt} WHERE {rc} = $1)")
            });
        }
        let referenced = if checks.is_empty() {
            false
        } else {
            sqlx::query_scalar::<_, bool>(&format!("SELECT {}", checks.join(" OR ")))
                .bind(id)
                .fetch_one(&mut **tx)
                .await?
        };
        let mut hard = !referenced;
        if hard {
            let mut sp = tx.begin().await?;
            match sqlx::query(&format!("DELETE FROM {name} WHERE id = $1"))
                .bind(id)
                .execute(&mut *sp)
                .await
            {
                Ok(_) => {
                    sqlx::query("DELETE FROM airtable_id_map WHERE table_name = $1 AND pg_id = $2")
                        .bind(t.table.name)
                        .bind(id)
                        .execute(&mut *sp)
                        .await?;
                    sp.commit().await?;
                }
                // Referenced through a key the mapping does not link: keep the row.
                Err(e) if DbErrorKind::of(&e) == DbErrorKind::ForeignKey => {
                    sp.rollback().await?;
                    hard = false;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if hard {
            applied.deleted += 1;
            metrics::counter!("inbound_changes_applied_total", "table" => t.table.name, "op" => "delete").increment(1);
        } else {
            sqlx::query(&format!(
                "UPDATE {name} SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL"
            ))
            .bind(id)
            .execute(&mut **tx)
            .await?;
            applied.soft_deleted += 1;
            metrics::counter!("inbound_changes_applied_total", "table" => t.table.name, "op" => "soft_delete").increment(1);
        }
        Ok(())
    }
}
