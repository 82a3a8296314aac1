//! What the applier knows of the Postgres catalog: integer and array columns, defaults, and
//! who refers to whom through the mapping's links.

use super::*;

/// What the applier knows about the Postgres catalog.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    pub(super) integer: HashSet<(String, String)>,
    pub(super) arrays: HashSet<(String, String)>,
    /// target table -> (referring table, column, is array), from the mapping's links.
    pub(super) referrers: HashMap<String, Vec<(String, String, bool)>>,
    /// NOT NULL columns with a default -> the default expression: an empty Airtable cell
    /// means the default there (the migrations' own SQL, read from the catalog).
    pub(super) defaults: HashMap<(String, String), String>,
}

impl Catalog {
    pub(super) async fn read(pool: &PgPool, mapping: &Mapping) -> sqlx::Result<Self> {
        let rows: Vec<(String, String, String, bool, Option<String>)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO', column_default::text
               FROM information_schema.columns WHERE table_schema = current_schema()",
        )
        .fetch_all(pool)
        .await?;
        let mut catalog = Catalog::default();
        for (t, c, ty, not_null, default) in rows {
            if let (true, Some(d)) = (not_null, default) {
                catalog.defaults.insert((t.clone(), c.clone()), d);
            }
            match ty.as_str() {
                "integer" | "bigint" | "smallint" => {
                    catalog.integer.insert((t, c));
                }
                "ARRAY" => {
                    catalog.arrays.insert((t, c));
                }
                _ => {}
            }
        }
        for t in &mapping.tables {
            for c in &t.columns {
                if let Some(target) = &c.field.link {
                    let array =
                        catalog.arrays.contains(&(t.table.name.to_owned(), c.column.clone()));
                    catalog.referrers.entry(target.clone()).or_default().push((
                        t.table.name.to_owned(),
                        c.column.clone(),
                        array,
                    ));
                }
            }
        }
        Ok(catalog)
    }
}
