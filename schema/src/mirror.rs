//! The Postgres -> Convex mirror: which tables go to Convex, parents first, under which Convex
//! table, with which columns. The default ships in `schema/convex.toml`; CONVEX_MAPPING
//! overrides the path. Validated against the registry here, against the Postgres catalog (its
//! columns and foreign keys) by the daemon at start.

use crate::registry::{self, Table, TableKind};
use serde::Deserialize;
use std::collections::HashSet;

/// The mirror shipped with this build.
pub const DEFAULT_MIRROR: &str = include_str!("../convex.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorFile {
    tables: Vec<TableEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    table: String,
    #[serde(default)]
    convex: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// A validated mirror, tables parents first.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub tables: Vec<MirroredTable>,
}

#[derive(Debug, Clone)]
pub struct MirroredTable {
    pub table: &'static Table,
    /// The Convex table's name.
    pub convex: String,
    /// The columns a document holds, in the registry's order (the id is its pgId, not here).
    pub columns: Vec<String>,
}

/// A mirror that cannot be used; names the table and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    #[error("the Convex mapping is not valid TOML: {0}")]
    Syntax(String),
    #[error("mirrored table {0:?} is not in the schema registry")]
    UnknownTable(String),
    #[error("{0}: sync bookkeeping and the API's private tables are never mirrored")]
    NotMirrorable(String),
    #[error("{table}.{column}: no such column to exclude")]
    UnknownColumn { table: String, column: String },
    #[error(
        "{table}: Convex table name {name:?} must be letters, digits and _, starting with a letter"
    )]
    BadName { table: String, name: String },
    #[error("{0:?} is mirrored twice")]
    Duplicate(String),
}

impl Mirror {
    pub fn default_mirror() -> Result<Self, MirrorError> {
        Self::parse(DEFAULT_MIRROR)
    }

    pub fn parse(text: &str) -> Result<Self, MirrorError> {
        let file: MirrorFile =
            toml::from_str(text).map_err(|e| MirrorError::Syntax(e.to_string()))?;
        let mut seen = HashSet::new();
        let mut tables = Vec::with_capacity(file.tables.len());
        for e in file.tables {
            let table = registry::table(&e.table)
                .ok_or_else(|| MirrorError::UnknownTable(e.table.clone()))?;
            if matches!(table.kind, TableKind::Sync | TableKind::Private) {
                return Err(MirrorError::NotMirrorable(e.table));
            }
            let convex = e.convex.unwrap_or_else(|| e.table.clone());
            let valid = convex.starts_with(|c: char| c.is_ascii_alphabetic())
                && convex.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(MirrorError::BadName { table: e.table, name: convex });
            }
            if !seen.insert(format!("pg:{}", e.table)) {
                return Err(MirrorError::Duplicate(e.table));
            }
            if !seen.insert(format!("convex:{convex}")) {
                return Err(MirrorError::Duplicate(convex));
            }
            if let Some(c) = e.exclude.iter().find(|c| table.column(c).is_none()) {
                return Err(MirrorError::UnknownColumn { table: e.table, column: c.clone() });
            }
            let columns = table
                .columns
                .iter()
                .filter(|c| !c.secret && c.name != "id" && !e.exclude.iter().any(|x| x == c.name))
                .map(|c| c.name.to_owned())
                .collect();
            tables.push(MirroredTable { table, convex, columns });
        }
        Ok(Self { tables })
    }

    pub fn table(&self, name: &str) -> Option<&MirroredTable> {
        self.tables.iter().find(|t| t.table.name == name)
    }

    /// A table's position, parents first.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.table.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mirrors_every_domain_table_and_no_secret() {
        let m = Mirror::default_mirror().expect("valid");
        let domain: Vec<&str> = registry::TABLES
            .iter()
            .filter(|t| !matches!(t.kind, TableKind::Sync | TableKind::Private))
            .map(|t| t.name)
            .collect();
        let mirrored: Vec<&str> = m.tables.iter().map(|t| t.table.name).collect();
        assert_eq!(mirrored.len(), domain.len());
        assert!(domain.iter().all(|t| mirrored.contains(t)), "{mirrored:?}");
        let users = m.table("users").expect("users");
        assert!(!users.columns.iter().any(|c| c == "password_hash" || c == "id"));
        assert!(users.columns.iter().any(|c| c == "email"));
    }

    #[test]
    fn bad_mirrors_name_what_is_wrong() {
        let cases = [
            ("[[tables]]\ntable = \"nope\"", MirrorError::UnknownTable("nope".into())),
            (
                "[[tables]]\ntable = \"refresh_tokens\"",
                MirrorError::NotMirrorable("refresh_tokens".into()),
            ),
            (
                "[[tables]]\ntable = \"goals\"\n[[tables]]\ntable = \"goals\"",
                MirrorError::Duplicate("goals".into()),
            ),
            (
                "[[tables]]\ntable = \"goals\"\nexclude = [\"nope\"]",
                MirrorError::UnknownColumn { table: "goals".into(), column: "nope".into() },
            ),
            (
                "[[tables]]\ntable = \"goals\"\nconvex = \"_goals\"",
                MirrorError::BadName { table: "goals".into(), name: "_goals".into() },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Mirror::parse(text).err(), Some(want), "{text}");
        }
        let m = Mirror::parse(
            "[[tables]]\ntable = \"goals\"\nconvex = \"coachGoals\"\nexclude = [\"description\"]",
        )
        .expect("valid");
        assert_eq!(m.tables[0].convex, "coachGoals");
        assert!(!m.tables[0].columns.iter().any(|c| c == "description"));
    }
}
