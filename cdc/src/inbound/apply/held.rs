//! No phantom mass deletes. A reconcile infers a deletion when a record is missing from a
//! listing; an outage, a pagination bug or a mis-set view can make much of a table look
//! missing at once. A pass that would delete more than the guard allows holds those
//! deletions in `sync_held_deletes` for an operator instead; a held record that reappears
//! leaves the queue by itself, and a rejected one is not inferred deleted again.

use super::*;
use schema::mapping::TableId;

/// SYNC_DELETE_GUARD: a pass may delete at most `rows` rows, or at most `percent` % of the
/// table's mapped rows, whichever is more; beyond both, its deletions are held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeleteGuard {
    pub rows: usize,
    pub percent: f64,
}

impl Default for DeleteGuard {
    fn default() -> Self {
        Self { rows: 10, percent: 5.0 }
    }
}

impl DeleteGuard {
    /// `ROWS,PERCENT` (e.g. `10,5`), or `off`.
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        if matches!(s.trim(), "off" | "0") {
            return Ok(None);
        }
        let (rows, percent) =
            s.split_once(',').ok_or("expected ROWS,PERCENT (e.g. 10,5) or off")?;
        let rows = rows.trim().parse().map_err(|_| format!("{rows:?} is not a row count"))?;
        let percent: f64 = percent
            .trim()
            .trim_end_matches('%')
            .parse()
            .map_err(|_| format!("{percent:?} is not a percentage"))?;
        Ok(Some(Self { rows, percent }))
    }

    /// Whether deleting `n` of `total` mapped rows at once must wait for an operator.
    pub fn holds(&self, n: usize, total: usize) -> bool {
        n > self.rows && (n as f64) * 100.0 > self.percent * total as f64
    }
}

/// One held (or rejected) deletion, for the CLI.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct HeldDelete {
    pub id: i64,
    pub table_name: String,
    pub airtable_id: String,
    pub pg_id: Uuid,
    pub state: String,
    pub held_at: chrono::DateTime<chrono::Utc>,
}

impl Applier {
    /// The records of `table` a listing that found `present` says are deleted, minus those
    /// held or rejected; when they are more than `guard` allows, they are held and none is
    /// returned. Held records found again leave the queue.
    pub async fn inferred_deletes(
        &self,
        table: TableId,
        present: &HashSet<String>,
        guard: Option<DeleteGuard>,
    ) -> sqlx::Result<Vec<String>> {
        let name = self.mapping.tables[table].table.name;
        let mapped: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT airtable_record_id, pg_id FROM airtable_id_map WHERE table_name = $1",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let held: Vec<String> =
            sqlx::query_scalar("SELECT airtable_id FROM sync_held_deletes WHERE table_name = $1")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        let back: Vec<&String> = held.iter().filter(|r| present.contains(*r)).collect();
        if !back.is_empty() {
            sqlx::query(
                "DELETE FROM sync_held_deletes WHERE table_name = $1 AND airtable_id = ANY ($2)",
            )
            .bind(name)
            .bind(&back)
            .execute(&self.pool)
            .await?;
            tracing::info!(
                table = name,
                records = back.len(),
                "held deletions whose records reappeared left the queue"
            );
        }
        let known: HashSet<&str> = held.iter().map(String::as_str).collect();
        let (records, ids): (Vec<String>, Vec<Uuid>) = mapped
            .iter()
            .filter(|(r, _)| !present.contains(r) && !known.contains(r.as_str()))
            .cloned()
            .unzip();
        if guard.is_some_and(|g| g.holds(records.len(), mapped.len())) {
            sqlx::query(
                "INSERT INTO sync_held_deletes (table_name, airtable_id, pg_id)
                 SELECT $1, r, p FROM unnest($2::text[], $3::uuid[]) AS h (r, p)
                 ON CONFLICT (table_name, airtable_id) DO NOTHING",
            )
            .bind(name)
            .bind(&records)
            .bind(&ids)
            .execute(&self.pool)
            .await?;
            tracing::warn!(
                table = name,
                missing = records.len(),
                of = mapped.len(),
                "a listing lacks too much of the table at once: its deletions are held (cdc inbound deletes list)"
            );
            return Ok(Vec::new());
        }
        Ok(records)
    }

    /// Sets `inbound_deletes_held{table}` from the queue; returns the total held. The
    /// daemon's bulk lane calls it after every round, so the CLI's decisions count too.
    pub async fn count_held(&self) -> sqlx::Result<i64> {
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT table_name, count(*) FROM sync_held_deletes WHERE state = 'held' GROUP BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut total = 0;
        for t in &self.mapping.tables {
            let n = counts.iter().find(|(name, _)| name == t.table.name).map_or(0, |(_, n)| *n);
            metrics::gauge!("inbound_deletes_held", "table" => t.table.name).set(n as f64);
            total += n;
        }
        Ok(total)
    }

    /// The queue (held first), for `cdc inbound deletes list`.
    pub async fn held_deletes(&self, all: bool) -> sqlx::Result<Vec<HeldDelete>> {
        sqlx::query_as(
            "SELECT id, table_name, airtable_id, pg_id, state, held_at FROM sync_held_deletes
             WHERE $1 OR state = 'held' ORDER BY state, id",
        )
        .bind(all)
        .fetch_all(&self.pool)
        .await
    }

    /// Applies the held deletions `ids` (None: all held); returns how many were applied.
    pub async fn approve_held(&self, ids: Option<&[i64]>) -> Result<usize, ApplyError> {
        let chosen = self.choose_held(ids).await?;
        let mut batch = Batch::default();
        for (_, table, record) in &chosen {
            if let Some(ti) = self.mapping.table_id(table) {
                batch.deletes.push((ti, record.clone()));
            }
        }
        self.apply(batch).await?;
        let done: Vec<i64> = chosen.iter().map(|(id, _, _)| *id).collect();
        sqlx::query("DELETE FROM sync_held_deletes WHERE id = ANY ($1)")
            .bind(&done)
            .execute(&self.pool)
            .await?;
        Ok(done.len())
    }

    /// Keeps the rows of the held deletions `ids` (None: all held): their records are not
    /// inferred deleted again until they reappear. Returns how many.
    pub async fn reject_held(&self, ids: Option<&[i64]>) -> sqlx::Result<usize> {
        let chosen = self.choose_held(ids).await?;
        let ids: Vec<i64> = chosen.iter().map(|(id, _, _)| *id).collect();
        sqlx::query("UPDATE sync_held_deletes SET state = 'rejected', decided_at = now() WHERE id = ANY ($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await?;
        Ok(ids.len())
    }

    async fn choose_held(&self, ids: Option<&[i64]>) -> sqlx::Result<Vec<(i64, String, String)>> {
        sqlx::query_as(
            "SELECT id, table_name, airtable_id FROM sync_held_deletes
             WHERE state = 'held' AND ($1::bigint[] IS NULL OR id = ANY ($1)) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::DeleteGuard;

    #[test]
    fn the_guard_holds_only_past_both_bounds() {
        let g = DeleteGuard::default();
        assert!(!g.holds(10, 20), "10 rows are allowed, whatever the share");
        assert!(!g.holds(11, 1000), "1.1 % is allowed");
        assert!(g.holds(11, 100), "11 % of 100");
        assert!(g.holds(40, 100));
        assert_eq!(DeleteGuard::parse("10,5").expect("parse"), Some(g));
        assert_eq!(
            DeleteGuard::parse("3, 1%").expect("parse"),
            Some(DeleteGuard { rows: 3, percent: 1.0 })
        );
        assert_eq!(DeleteGuard::parse("off").expect("parse"), None);
        assert!(DeleteGuard::parse("ten").is_err());
    }
}
