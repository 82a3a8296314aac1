//! Records and links: pending rows become Airtable records, completed from Postgres,
//! their links resolved (missing parents written first).

use super::*;

/// One record being upserted: its pg id, Airtable fields, and bookkeeping.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    pub(super) id: Uuid,
    pub(super) fields: Map<String, Value>,
    pub(super) replays: Vec<i64>,
    pub(super) since: DateTime<Utc>,
}

impl AirtableDestination {
    /// Upserts rows of one table: completes them from Postgres where needed, resolves their
    /// links (creating missing parents first), and sends them in batches of 10.
    pub(super) fn upsert_rows(&mut self, ti: TableId, rows: Vec<(Uuid, Pending)>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let table = self.mapped(ti).table.name;
            let ids: Vec<Uuid> = rows.iter().map(|(id, _)| *id).collect();
            let known = self.store.record_ids(table, &ids).await?;
            // Rows Airtable may not have yet are written whole; read what the stream lacks.
            // A record Airtable has takes only what changed (derived fields alone included).
            let need_read: Vec<Uuid> = rows
                .iter()
                .filter(|(id, p)| match p {
                    Pending::Upsert { complete, fields, derived, .. } => {
                        (!*complete && !known.contains_key(id)) || (fields.is_empty() && !*derived)
                    }
                    Pending::Delete { .. } => false,
                })
                .map(|(id, _)| *id)
                .collect();
            let current = self.store.rows(table, &need_read).await?;
            let derived_ids: Vec<Uuid> = rows
                .iter()
                .filter(|(_, p)| matches!(p, Pending::Upsert { derived: true, .. }))
                .map(|(id, _)| *id)
                .collect();
            let progress = match schema::registry::derivation_of(table) {
                Some(d) if !derived_ids.is_empty() => {
                    self.store.derived(d.view, d.key, &derived_ids).await?
                }
                _ => HashMap::new(),
            };

            let mut outgoing = Vec::new();
            for (id, p) in rows {
                let Pending::Upsert { mut fields, derived, replays, since, .. } = p else {
                    continue;
                };
                if let Some(row) = current.get(&id) {
                    for c in self.mapped(ti).outbound() {
                        if !fields.contains_key(&c.column) {
                            fields.insert(
                                c.column.clone(),
                                row.get(&c.column).cloned().unwrap_or(Value::Null),
                            );
                        }
                    }
                } else if need_read.contains(&id)
                    || (fields.is_empty() && !progress.contains_key(&id))
                {
                    // Gone from Postgres since: its delete follows in the stream.
                    continue;
                }
                let mut record = Map::new();
                record.insert(self.mapping.merge_field.clone(), json!(id.to_string()));
                let mut bad = None;
                for c in self.mapped(ti).outbound() {
                    if let Some(v) = fields.get(&c.column) {
                        if c.field.link.is_some() {
                            record.insert(c.field.field.clone(), v.clone());
                        } else {
                            match cells::cell(&c.field.kind, v) {
                                Ok(cell) => {
                                    record.insert(c.field.field.clone(), cell);
                                }
                                Err(e) => {
                                    // The payload keeps the value as Postgres has it.
                                    record.insert(c.field.field.clone(), v.clone());
                                    bad = Some((e.code(), format!("{}.{}: {e}", table, c.column)));
                                }
                            }
                        }
                    }
                }
                if derived {
                    if let Some(pr) = progress.get(&id) {
                        for (column, f) in &self.mapped(ti).derived {
                            record.insert(
                                f.field.clone(),
                                pr.get(column).cloned().unwrap_or(Value::Null),
                            );
                        }
                    }
                }
                match bad {
                    Some((code, message)) => {
                        self.dead_letter(
                            table,
                            Some(id),
                            "upsert",
                            Value::Object(record),
                            code,
                            &message,
                            1,
                        )
                        .await?;
                    }
                    None => outgoing.push(Outgoing { id, fields: record, replays, since }),
                }
            }
            let outgoing = self.resolve_links(ti, outgoing).await?;
            let batches: Vec<Vec<Outgoing>> =
                outgoing.chunks(10).map(<[Outgoing]>::to_vec).collect();
            let this = &*self;
            let results: Vec<Result<(), DestinationError>> = stream::iter(batches)
                .map(|b| this.send_upserts(ti, b))
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            results.into_iter().collect()
        })
    }

    /// Turns link columns (pg uuids) into Airtable record ids. Missing Postgres-owned parents
    /// are written first; a row whose link cannot be resolved is dead-lettered, never sent
    /// half-linked.
    pub(super) async fn resolve_links(
        &mut self,
        ti: TableId,
        mut outgoing: Vec<Outgoing>,
    ) -> Result<Vec<Outgoing>, DestinationError> {
        let link_columns: Vec<(String, String)> = self
            .mapped(ti)
            .outbound()
            .filter_map(|c| c.field.link.clone().map(|l| (c.field.field.clone(), l)))
            .collect();
        if link_columns.is_empty() {
            return Ok(outgoing);
        }
        let mut resolved: HashMap<String, HashMap<Uuid, String>> = HashMap::new();
        for (field, target) in &link_columns {
            let wanted: Vec<Uuid> = outgoing
                .iter()
                .flat_map(|o| o.fields.get(field).map(cells::link_ids).unwrap_or_default())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let mut map = self.store.record_ids(target, &wanted).await?;
            let missing: Vec<Uuid> =
                wanted.iter().filter(|id| !map.contains_key(id)).copied().collect();
            if let Some(tti) = self.table_index(target) {
                let outbound_capable = self.mapped(tti).outbound().next().is_some();
                if !missing.is_empty() && outbound_capable && tti != ti {
                    let since = Utc::now();
                    let parents = missing
                        .iter()
                        .map(|id| (*id, Pending::reread(since, Vec::new())))
                        .collect();
                    self.upsert_rows(tti, parents).await?;
                    map = self.store.record_ids(target, &wanted).await?;
                }
                if !missing.is_empty() && tti == ti {
                    // Links within the table (none in the default mapping): look up what exists.
                    map.extend(self.store.record_ids(target, &missing).await?);
                }
            }
            resolved.insert(field.clone(), map);
        }
        let table = self.mapped(ti).table.name;
        let mut ready = Vec::with_capacity(outgoing.len());
        for mut o in outgoing.drain(..) {
            let mut unresolved = Vec::new();
            for (field, target) in &link_columns {
                if let Some(v) = o.fields.get(field).cloned() {
                    let ids = cells::link_ids(&v);
                    let map = &resolved[field];
                    let recs: Vec<Value> =
                        ids.iter().filter_map(|id| map.get(id).map(|r| json!(r))).collect();
                    if recs.len() != ids.len() {
                        unresolved.push(format!(
                            "{field} -> {target} {:?}",
                            ids.iter().filter(|id| !map.contains_key(id)).collect::<Vec<_>>()
                        ));
                    }
                    o.fields.insert(field.clone(), Value::Array(recs));
                }
            }
            if unresolved.is_empty() {
                ready.push(o);
            } else {
                let message = format!(
                    "links to rows Airtable does not have (no airtable_id_map entry): {}; sync those records (the inbound reconcile maps Airtable-owned ones), then `cdc dlq replay`",
                    unresolved.join("; ")
                );
                self.dead_letter(
                    table,
                    Some(o.id),
                    "upsert",
                    Value::Object(o.fields),
                    "LINK_UNRESOLVED",
                    &message,
                    1,
                )
                .await?;
            }
        }
        Ok(ready)
    }
}
