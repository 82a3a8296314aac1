//! The base's schema read when leading starts, and the mapping checked against it.

use super::*;
use crate::airtable::meta::BaseMeta;

impl AirtableDestination {
    /// What a new leader does first with Airtable: reads the base's schema once for both
    /// directions (a refused token stops the lead, naming the variables), keeps Airtable's
    /// ids, checks the mapping against it, and hands it to `inbound`. Err: why the lead is
    /// refused.
    pub(super) async fn read_base(
        &self,
        inbound: Option<&crate::inbound::Inbound>,
    ) -> Result<(), String> {
        use crate::airtable::binding;
        let meta = match self.client.tables(Lane::Bulk).await {
            // Ids on the wire from here on; the schema as the mapping names it.
            Ok(meta) => binding::bind(
                &self.client,
                &BaseMeta::from_json(&meta),
                &self.mapping,
                self.store.pool(),
            )
            .await
            .map_err(|e| format!("cannot keep Airtable's ids: {e}"))?,
            Err(e) if e.is_auth() => return Err(e.to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Airtable schema; leading without validating the mapping against it");
                return Ok(());
            }
        };
        self.validate_against_airtable(&meta)
            .map_err(|e| format!("the mapping does not fit the Airtable base: {e}"))?;
        if let Some(inbound) = inbound {
            inbound.set_schema(&meta).await;
        }
        Ok(())
    }

    /// Checks the mapping against the base's schema (`meta`, the Meta API's answer): every
    /// mapped table, the merge field and every outbound field with its type. Each problem
    /// names the Postgres table and column, and the Airtable table and field.
    pub fn validate_against_airtable(&self, meta: &BaseMeta) -> Result<(), String> {
        let mut problems = Vec::new();
        for t in &self.mapping.tables {
            let Some(at) = meta.table(&t.airtable) else {
                problems.push(format!(
                    "Airtable has no table {:?} (mapped from {})",
                    t.airtable, t.table.name
                ));
                continue;
            };
            let field = |name: &str| at.field(name);
            match field(&self.mapping.merge_field) {
                None => problems
                    .push(format!("{}: no merge field {:?}", t.airtable, self.mapping.merge_field)),
                Some(f)
                    if !matches!(
                        f.kind.as_str(),
                        "singleLineText" | "number" | "multilineText"
                    ) =>
                {
                    problems.push(format!(
                        "{}.{}: type {} cannot be merged on",
                        t.airtable, self.mapping.merge_field, f.kind
                    ))
                }
                Some(_) => {}
            }
            let columns = t
                .outbound()
                .map(|c| (c.column.as_str(), &c.field))
                .chain(t.derived.iter().map(|(column, f)| (column.as_str(), f)));
            for (column, c) in columns {
                let source = format!("Postgres column {}.{column}", t.table.name);
                match field(&c.field) {
                    None => problems.push(format!(
                        "Airtable table {:?} has no field {:?} (mapped from {})",
                        t.airtable, c.field, source
                    )),
                    Some(f) if c.kind != *f.kind.as_str() => problems.push(format!(
                        "Airtable field {:?}.{:?} is of type {} but the mapping says {} (mapped from {})",
                        t.airtable, c.field, f.kind, c.kind, source
                    )),
                    Some(_) => {}
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::airtable::Budget;

    /// The Meta API's answer for the base the mapping expects, with ids, edited by `tweak`.
    fn meta(mapping: &Mapping, tweak: impl FnOnce(&mut Vec<Value>)) -> BaseMeta {
        let schema = mapping.airtable_schema("appTEST", "Test");
        let mut tables = schema["bases"][0]["tables"].as_array().cloned().unwrap_or_default();
        for (i, t) in tables.iter_mut().enumerate() {
            t["id"] = json!(format!("tbl{i:014}"));
            for (j, f) in t["fields"].as_array_mut().into_iter().flatten().enumerate() {
                f["id"] = json!(format!("fld{i:07}{j:07}"));
            }
        }
        tweak(&mut tables);
        BaseMeta::from_json(&json!({ "tables": tables }))
    }

    #[tokio::test]
    async fn problems_name_the_postgres_column_and_the_airtable_table_and_field() {
        let mapping = Arc::new(Mapping::default_mapping().expect("mapping"));
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool connects to nothing");
        let config = AirtableConfig::new("http://127.0.0.1:1", "patNONE", "appTEST");
        let budget = Arc::new(Budget::new(0, 0, std::time::Duration::from_secs(1)));
        let client = Arc::new(AirtableClient::new(config, budget).expect("client"));
        let d = AirtableDestination::new(client, mapping.clone(), pool);

        assert_eq!(d.validate_against_airtable(&meta(&mapping, |_| {})), Ok(()));
        let broken = meta(&mapping, |tables| {
            let programs = tables.iter_mut().find(|t| t["name"] == "Programs").expect("Programs");
            let fields = programs["fields"].as_array_mut().expect("fields");
            fields.retain(|f| f["name"] != "Name");
            for f in fields.iter_mut().filter(|f| f["name"] == "Start") {
                f["type"] = json!("singleLineText");
            }
        });
        let e = d.validate_against_airtable(&broken).expect_err("two problems");
        assert!(
            e.contains(r#"Airtable table "Programs" has no field "Name" (mapped from Postgres column programs.name)"#),
            "{e}"
        );
        assert!(
            e.contains(r#"Airtable field "Programs"."Start" is of type singleLineText but the mapping says date (mapped from Postgres column programs.start_date)"#),
            "{e}"
        );
    }
}
