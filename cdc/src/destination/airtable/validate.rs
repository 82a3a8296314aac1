//! The mapping checked against the base's schema, once per start.

use super::*;
use crate::airtable::meta::BaseMeta;

impl AirtableDestination {
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
