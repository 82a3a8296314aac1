//! The mapping checked against the base's schema, once per start.

use super::*;

impl AirtableDestination {
    /// Checks the mapping against the base's schema (`meta`, the Meta API's answer): every
    /// mapped table, the merge field and every outbound field with its type. Each problem
    /// names the Postgres table and column, and the Airtable table and field.
    pub fn validate_against_airtable(&self, meta: &Value) -> Result<(), String> {
        let tables = meta["tables"].as_array().cloned().unwrap_or_default();
        let mut problems = Vec::new();
        for t in &self.mapping.tables {
            let Some(at) = tables
                .iter()
                .find(|x| x["name"] == t.airtable.as_str() || x["id"] == t.airtable.as_str())
            else {
                problems.push(format!(
                    "Airtable has no table {:?} (mapped from {})",
                    t.airtable, t.table.name
                ));
                continue;
            };
            let fields = at["fields"].as_array().cloned().unwrap_or_default();
            let field = |name: &str| fields.iter().find(|f| f["name"] == name).cloned();
            match field(&self.mapping.merge_field) {
                None => problems
                    .push(format!("{}: no merge field {:?}", t.airtable, self.mapping.merge_field)),
                Some(f)
                    if !matches!(
                        f["type"].as_str(),
                        Some("singleLineText" | "number" | "multilineText")
                    ) =>
                {
                    problems.push(format!(
                        "{}.{}: type {} cannot be merged on",
                        t.airtable, self.mapping.merge_field, f["type"]
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
                    Some(f) if f["type"] != c.kind.as_str() => problems.push(format!(
                        "Airtable field {:?}.{:?} is of type {} but the mapping says {} (mapped from {})",
                        t.airtable, c.field, f["type"], c.kind, source
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
