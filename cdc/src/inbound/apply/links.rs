//! Links: Airtable record ids of linked records resolved to Postgres ids.

use super::*;
use schema::mapping::TableId;

impl Applier {
    /// Pg ids of linked records (target table, record id) that Airtable links to but
    /// Postgres does not know yet, grouped by target table index.
    pub async fn missing_links(
        &self,
        upserts: &[Upsert],
    ) -> sqlx::Result<HashMap<TableId, Vec<String>>> {
        let in_batch: HashSet<(TableId, &str)> =
            upserts.iter().map(|u| (u.table, u.record_id.as_str())).collect();
        let wanted = self.links_of(upserts);
        let known = self.lookup_links(&self.pool, &wanted).await?;
        let mut missing: HashMap<TableId, Vec<String>> = HashMap::new();
        for (target, rid) in wanted {
            if known.contains_key(&(target.clone(), rid.clone())) {
                continue;
            }
            let Some(ti) = self.mapping.table_id(&target) else {
                continue;
            };
            if !in_batch.contains(&(ti, rid.as_str())) {
                missing.entry(ti).or_default().push(rid);
            }
        }
        Ok(missing)
    }

    pub(super) fn links_of(&self, upserts: &[Upsert]) -> HashSet<(String, String)> {
        let mut out = HashSet::new();
        for u in upserts {
            for c in self.columns(&self.mapping.tables[u.table]) {
                let (Some(target), Some(Value::Array(ids))) =
                    (&c.field.link, u.fields.get(&c.field.field))
                else {
                    continue;
                };
                for id in ids.iter().filter_map(Value::as_str) {
                    out.insert((target.clone(), id.to_owned()));
                }
            }
        }
        out
    }

    pub(super) async fn lookup_links<'e, E: sqlx::PgExecutor<'e>>(
        &self,
        db: E,
        wanted: &HashSet<(String, String)>,
    ) -> sqlx::Result<HashMap<(String, String), Uuid>> {
        if wanted.is_empty() {
            return Ok(HashMap::new());
        }
        let (tables, recs): (Vec<String>, Vec<String>) = wanted.iter().cloned().unzip();
        let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
            "SELECT m.table_name, m.airtable_record_id, m.pg_id FROM airtable_id_map m
               JOIN unnest($1::text[], $2::text[]) AS w(t, r) ON m.table_name = w.t AND m.airtable_record_id = w.r",
        )
        .bind(&tables)
        .bind(&recs)
        .fetch_all(db)
        .await?;
        Ok(rows.into_iter().map(|(t, r, id)| ((t, r), id)).collect())
    }
}
