//! Upserts: a record's Airtable-owned cells written into its row (created when new), or
//! parked when Postgres refuses them.

use super::*;
use schema::postgres::DbErrorKind;

impl Applier {
    pub(super) async fn upsert_group(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        group: &[Upsert],
        applied: &mut Applied,
        parked: &mut Vec<Parked>,
    ) -> Result<(), ApplyError> {
        let t = &self.mapping.tables[group[0].table];
        let links = self.lookup_links(&mut **tx, &self.links_of(group)).await?;
        let ids: Vec<String> = group.iter().map(|u| u.record_id.clone()).collect();
        let known: HashMap<String, Uuid> = sqlx::query_as::<_, (String, Uuid)>(
            "SELECT airtable_record_id, pg_id FROM airtable_id_map WHERE table_name = $1 AND airtable_record_id = ANY($2)",
        )
        .bind(t.table.name)
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        // A map entry whose row was deleted here (by hand) is stale: the record's row is
        // made again under its old id, where this applier may create rows.
        let mapped: Vec<Uuid> = known.values().copied().collect();
        let live: HashSet<Uuid> = sqlx::query_scalar::<_, Uuid>(&format!(
            "SELECT id FROM {} WHERE id = ANY($1)",
            quote_ident(t.table.name)
        ))
        .bind(&mapped)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        let mut applied_ids: Vec<&str> = Vec::new();
        for u in group {
            let mut values = match self.values_of(u, &links) {
                Ok(v) => v,
                Err(e) => {
                    parked.push(parked_record(t, u, e));
                    continue;
                }
            };
            if t.table.rows_owned_by_airtable() {
                // The record is there, so the row is not deleted (an undo in Airtable
                // restores a record under its old id).
                values.insert("deleted_at".into(), Value::Null);
            }
            let carried = u
                .fields
                .get(&self.mapping.merge_field)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Uuid>().ok());
            let (known, merge) = match known.get(&u.record_id).copied() {
                Some(id) if live.contains(&id) => (Some(id), carried),
                Some(stale) => (None, Some(stale)),
                None => (None, carried),
            };
            let mut sp = tx.begin().await?;
            let outcome = self.upsert_one(&mut sp, t, u, known, merge, &values).await;
            match outcome {
                Ok(o) => {
                    sp.commit().await?;
                    // A record's whole current state supersedes whatever was parked for it.
                    if u.complete {
                        applied_ids.push(&u.record_id);
                    }
                    match o {
                        Written::Changed(id, stamp) => {
                            applied.written += 1;
                            metrics::counter!("inbound_changes_applied_total", "table" => t.table.name, "op" => "upsert").increment(1);
                            if stamp {
                                applied.to_stamp.push((u.table, u.record_id.clone(), id));
                            }
                            if t.table.name == "users" {
                                sqlx::query(
                                    "SELECT pg_notify($1, lower(email)) FROM users WHERE id = $2",
                                )
                                .bind(USER_SYNCED_CHANNEL)
                                .bind(id)
                                .execute(&mut **tx)
                                .await?;
                            }
                        }
                        Written::Unchanged => applied.unchanged += 1,
                        Written::Ignored => {
                            applied.ignored += 1;
                            metrics::counter!("inbound_changes_ignored_total", "table" => t.table.name).increment(1);
                        }
                    }
                }
                Err(e @ sqlx::Error::Database(_)) => {
                    sp.rollback().await?;
                    // The constraint or column, never the SQL.
                    let detail = match &e {
                        sqlx::Error::Database(db) => db
                            .constraint()
                            .map(str::to_owned)
                            .unwrap_or_else(|| db.message().to_owned()),
                        _ => String::new(),
                    };
                    let code = match DbErrorKind::of(&e) {
                        DbErrorKind::NotNull => "NOT_NULL_VIOLATION",
                        DbErrorKind::Unique => "UNIQUE_VIOLATION",
                        DbErrorKind::ForeignKey => "FOREIGN_KEY_VIOLATION",
                        DbErrorKind::Check | DbErrorKind::Exclusion => "CHECK_VIOLATION",
                        _ => "INVALID_VALUE",
                    };
                    parked.push(parked_record(
                        t,
                        u,
                        ValueError { code, message: format!("Postgres refused the row: {detail}") },
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Dead letters of records whose whole state applies now are resolved (fixed in
        // Airtable, then polled, reconciled or replayed).
        if !applied_ids.is_empty() {
            sqlx::query(
                "UPDATE sync_dead_letter SET status = 'replayed', resolved_at = now()
                  WHERE direction = 'inbound' AND status = 'pending' AND table_name = $1 AND airtable_record_id = ANY($2)",
            )
            .bind(t.table.name)
            .bind(&applied_ids)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn upsert_one(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        t: &MappedTable,
        u: &Upsert,
        known: Option<Uuid>,
        merge: Option<Uuid>,
        values: &Map<String, Value>,
    ) -> sqlx::Result<Written> {
        let name = quote_ident(t.table.name);
        let id = match known {
            Some(id) => Some(id),
            None => match merge {
                Some(m) => {
                    let exists: bool = sqlx::query_scalar(&format!(
                        "SELECT EXISTS (SELECT 1 FROM {name} WHERE id = $1)"
                    ))
                    .bind(m)
                    .fetch_one(&mut **tx)
                    .await?;
                    exists.then_some(m)
                }
                None => None,
            },
        };
        if let Some(id) = id {
            if known.is_none() {
                map_record(&mut **tx, t.table.name, id, &u.record_id).await?;
            }
            if values.is_empty() {
                return Ok(Written::Unchanged);
            }
            let cols: Vec<String> = values.keys().map(|c| quote_ident(c)).collect();
            let new: Vec<String> = values
                .keys()
                .zip(&cols)
                .map(|(c, q)| {
                    match self.catalog.defaults.get(&(t.table.name.to_owned(), c.clone())) {
                        Some(d) => format!("COALESCE(r.{q}, {d})"),
                        None => format!("r.{q}"),
                    }
                })
                .collect();
            let set: Vec<String> =
                cols.iter().zip(&new).map(|(c, n)| format!("{c} = {n}")).collect();
            let old: Vec<String> = cols.iter().map(|c| format!("t.{c}")).collect();
            let sql = format!(
                "UPDATE {name} t SET {} FROM jsonb_populate_record(NULL::{name}, $2) r WHERE t.id = $1 AND ROW({}) IS DISTINCT FROM ROW({})",
                set.join(", "),
                old.join(", "),
                new.join(", ")
            );
            let n = sqlx::query(&sql)
                .bind(id)
                .bind(Value::Object(values.clone()))
                .execute(&mut **tx)
                .await?;
            return Ok(if n.rows_affected() > 0 {
                Written::Changed(id, false)
            } else {
                Written::Unchanged
            });
        }
        if !self.creates_rows_of(t) {
            // Postgres decides which of these rows exist; Airtable only edits its fields.
            return Ok(Written::Ignored);
        }
        let id = merge.unwrap_or_else(Uuid::new_v4);
        let present: Map<String, Value> = values
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cols: Vec<String> = present.keys().map(|c| quote_ident(c)).collect();
        let sql = format!(
            "INSERT INTO {name} (id{}) SELECT $1{} FROM jsonb_populate_record(NULL::{name}, $2) r",
            cols.iter().map(|c| format!(", {c}")).collect::<String>(),
            cols.iter().map(|c| format!(", r.{c}")).collect::<String>(),
        );
        sqlx::query(&sql).bind(id).bind(Value::Object(present)).execute(&mut **tx).await?;
        map_record(&mut **tx, t.table.name, id, &u.record_id).await?;
        Ok(Written::Changed(id, merge.is_none()))
    }
}

pub(super) enum Written {
    /// (pg id, whether Airtable still needs the pg id written into the record)
    Changed(Uuid, bool),
    Unchanged,
    Ignored,
}

pub(super) fn parked_record(t: &MappedTable, u: &Upsert, e: ValueError) -> Parked {
    Parked {
        table: Some(t.table.name.to_owned()),
        record_id: Some(u.record_id.clone()),
        operation: "upsert",
        payload: json!({ "id": u.record_id, "fields": u.fields, "complete": u.complete }),
        code: e.code.to_owned(),
        message: e.message,
    }
}

impl Applier {
    /// SQL for what column `column` of `table` becomes when a record sets it from record
    /// `r` (a `jsonb_populate_record` alias): an empty cell takes the column's default.
    pub fn value_expression(&self, table: &str, column: &str, r: &str) -> String {
        let q = quote_ident(column);
        match self.catalog.defaults.get(&(table.to_owned(), column.to_owned())) {
            Some(d) => format!("COALESCE({r}.{q}, {d})"),
            None => format!("{r}.{q}"),
        }
    }

    /// What applying each record would write: its columns (this applier's scope) as
    /// Postgres values, links resolved through `airtable_id_map`; or why it cannot apply.
    /// Writes nothing (verify compares it with the rows).
    pub async fn expected_values(
        &self,
        records: &[Upsert],
    ) -> sqlx::Result<Vec<Result<Map<String, Value>, ValueError>>> {
        let links = self.lookup_links(&self.pool, &self.links_of(records)).await?;
        Ok(records.iter().map(|u| self.values_of(u, &links)).collect())
    }

    /// A record's columns (this applier's scope) as Postgres values, with `links` resolved.
    fn values_of(
        &self,
        u: &Upsert,
        links: &HashMap<(String, String), Uuid>,
    ) -> Result<Map<String, Value>, ValueError> {
        let integer =
            |tb: &str, c: &str| self.catalog.integer.contains(&(tb.to_owned(), c.to_owned()));
        let shape = |tb: &str, c: &str| {
            if self.catalog.arrays.contains(&(tb.to_owned(), c.to_owned())) {
                LinkShape::Many
            } else {
                LinkShape::One
            }
        };
        let cols = Columns { integer: &integer, link_shape: &shape, links };
        let t = &self.mapping.tables[u.table];
        row_values(t, self.columns(t), &u.fields, u.complete, &cols)
    }
}
