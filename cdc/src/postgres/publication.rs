//! The publication: exactly the mapped tables, no more, no less.

use super::{quote_ident, SqlError};
use tokio_postgres::Client;

/// What `sync` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicationChange {
    Created,
    Altered { added: Vec<String>, removed: Vec<String> },
    Unchanged,
}

impl PublicationChange {
    /// One line for the operator.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Self::Created => format!("created publication {name}"),
            Self::Altered { added, removed } => {
                format!("altered publication {name}: added {added:?}, removed {removed:?}")
            }
            Self::Unchanged => {
                format!("publication {name} already holds exactly the mapped tables")
            }
        }
    }
}

/// The tables (schema, name) a publication holds now; None when it does not exist.
pub async fn tables(
    client: &Client,
    name: &str,
) -> Result<Option<Vec<(String, String)>>, SqlError> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let rows = client
        .query("SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2", &[&name])
        .await?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

/// Creates the publication, or alters it, to hold exactly `wanted` (schema, table) pairs.
pub async fn sync(
    client: &Client,
    name: &str,
    wanted: &[(String, String)],
) -> Result<PublicationChange, SqlError> {
    let list = wanted
        .iter()
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
        .collect::<Vec<_>>()
        .join(", ");
    match tables(client, name).await? {
        None => {
            client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR TABLE {list}",
                    quote_ident(name)
                ))
                .await?;
            Ok(PublicationChange::Created)
        }
        Some(current) => {
            let added: Vec<String> = wanted
                .iter()
                .filter(|w| !current.contains(w))
                .map(|(s, t)| format!("{s}.{t}"))
                .collect();
            let removed: Vec<String> = current
                .iter()
                .filter(|c| !wanted.contains(c))
                .map(|(s, t)| format!("{s}.{t}"))
                .collect();
            if added.is_empty() && removed.is_empty() {
                return Ok(PublicationChange::Unchanged);
            }
            client
                .batch_execute(&format!("ALTER PUBLICATION {} SET TABLE {list}", quote_ident(name)))
                .await?;
            Ok(PublicationChange::Altered { added, removed })
        }
    }
}
