//! The Postgres -> Airtable mapping: which Airtable table and field each table and column
//! is, with types and links. The default ships in `schema/mapping.toml`; SYNC_MAPPING
//! overrides the path. Validated against the registry here, against the Postgres catalog
//! and the Airtable Meta API by the daemon at start.

use crate::registry::{self, Owner, Table};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};

/// The mapping shipped with this build.
pub const DEFAULT_MAPPING: &str = include_str!("../mapping.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    /// The Airtable field holding each record's Postgres id (upserts merge on it).
    pub merge_field: String,
    pub tables: BTreeMap<String, TableMapping>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMapping {
    pub airtable: String,
    pub fields: BTreeMap<String, FieldMapping>,
    /// Fields computed in SQL (e.g. program progress), written by outbox intents.
    #[serde(default)]
    pub derived: BTreeMap<String, FieldMapping>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    pub field: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// For linked-record fields: the mapped Postgres table the ids point at.
    #[serde(default)]
    pub link: Option<String>,
    /// For selects: the allowed options.
    #[serde(default)]
    pub choices: Vec<String>,
}

/// An Airtable field type the sync writes and reads. Any other type name parses as
/// `Unsupported` and is refused when the mapping is validated, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    SingleLineText,
    MultilineText,
    Email,
    Url,
    PhoneNumber,
    Number,
    Checkbox,
    Date,
    DateTime,
    SingleSelect,
    MultipleSelects,
    MultipleRecordLinks,
    Unsupported(String),
}

impl FieldKind {
    pub const SUPPORTED: [FieldKind; 12] = [
        FieldKind::SingleLineText,
        FieldKind::MultilineText,
        FieldKind::Email,
        FieldKind::Url,
        FieldKind::PhoneNumber,
        FieldKind::Number,
        FieldKind::Checkbox,
        FieldKind::Date,
        FieldKind::DateTime,
        FieldKind::SingleSelect,
        FieldKind::MultipleSelects,
        FieldKind::MultipleRecordLinks,
    ];

    /// The Meta API's name of the type.
    pub fn as_str(&self) -> &str {
        match self {
            FieldKind::SingleLineText => "singleLineText",
            FieldKind::MultilineText => "multilineText",
            FieldKind::Email => "email",
            FieldKind::Url => "url",
            FieldKind::PhoneNumber => "phoneNumber",
            FieldKind::Number => "number",
            FieldKind::Checkbox => "checkbox",
            FieldKind::Date => "date",
            FieldKind::DateTime => "dateTime",
            FieldKind::SingleSelect => "singleSelect",
            FieldKind::MultipleSelects => "multipleSelects",
            FieldKind::MultipleRecordLinks => "multipleRecordLinks",
            FieldKind::Unsupported(name) => name,
        }
    }

    pub fn parse(name: &str) -> FieldKind {
        FieldKind::SUPPORTED
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or_else(|| FieldKind::Unsupported(name.to_owned()))
    }

    /// A cell of this type is one string (selects are their option's name).
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            FieldKind::SingleLineText
                | FieldKind::MultilineText
                | FieldKind::Email
                | FieldKind::Url
                | FieldKind::PhoneNumber
                | FieldKind::SingleSelect
        )
    }
}

impl std::fmt::Display for FieldKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FieldKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(FieldKind::parse(&String::deserialize(d)?))
    }
}

impl PartialEq<str> for FieldKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// A mapped table's position in [`Mapping::tables`] (dependency order): a type of its own, so
/// it never mixes with another count or index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(pub usize);

impl<T> std::ops::Index<TableId> for Vec<T> {
    type Output = T;
    fn index(&self, id: TableId) -> &T {
        &self[id.0]
    }
}

impl<T> std::ops::IndexMut<TableId> for Vec<T> {
    fn index_mut(&mut self, id: TableId) -> &mut T {
        &mut self[id.0]
    }
}

/// A validated mapping, tables in dependency order (parents before children).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub merge_field: String,
    pub tables: Vec<MappedTable>,
}

#[derive(Debug, Clone)]
pub struct MappedTable {
    pub table: &'static Table,
    pub airtable: String,
    /// (column, field mapping, owner), in the registry's column order.
    pub columns: Vec<MappedColumn>,
    pub derived: Vec<(String, FieldMapping)>,
}

#[derive(Debug, Clone)]
pub struct MappedColumn {
    pub column: String,
    pub field: FieldMapping,
    pub owner: Owner,
}

/// A mapping that cannot be used; names the table and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the mapping is not valid TOML: {0}")]
    Syntax(String),
    #[error("mapped table {0:?} is not in the schema registry")]
    UnknownTable(String),
    #[error("{table}.{column}: no such column")]
    UnknownColumn { table: String, column: String },
    #[error("{table}.{column}: secret columns are never mapped")]
    Secret { table: String, column: String },
    #[error("{table}.{column}: link to {link:?}, which is not a mapped table")]
    UnknownLink { table: String, column: String, link: String },
    #[error(
        "{table}.{column}: a multipleRecordLinks field needs `link`, and only it may have one"
    )]
    LinkType { table: String, column: String },
    #[error("{table}: Airtable field {field:?} is mapped twice (or clashes with the merge field)")]
    DuplicateField { table: String, field: String },
    #[error("Airtable table {0:?} is mapped twice")]
    DuplicateTable(String),
    #[error("{table}.{column}: unsupported Airtable type {kind:?}")]
    UnsupportedType { table: String, column: String, kind: String },
}

impl Mapping {
    /// Every table's id, parents first.
    pub fn table_ids(&self) -> impl DoubleEndedIterator<Item = TableId> + ExactSizeIterator {
        (0..self.tables.len()).map(TableId)
    }

    /// The id of the mapped Postgres table `name`.
    pub fn table_id(&self, name: &str) -> Option<TableId> {
        self.tables.iter().position(|t| t.table.name == name).map(TableId)
    }

    /// The id of the table mapped to Airtable table `name_or_id`.
    pub fn airtable_table_id(&self, name_or_id: &str) -> Option<TableId> {
        self.tables.iter().position(|t| t.airtable == name_or_id).map(TableId)
    }

    /// The tables the publication holds, as (schema, table): every mapped table with
    /// Postgres-owned fields, and the outbox. The one definition of "published".
    pub fn published_tables(&self) -> Vec<(String, String)> {
        self.tables
            .iter()
            .filter(|t| t.outbound().next().is_some())
            .map(|t| t.table.name)
            .chain(std::iter::once("sync_outbox"))
            .map(|t| ("public".to_owned(), t.to_owned()))
            .collect()
    }

    /// The shipped default.
    pub fn default_mapping() -> Result<Self, MappingError> {
        Self::parse(DEFAULT_MAPPING)
    }

    pub fn parse(text: &str) -> Result<Self, MappingError> {
        let file: MappingFile =
            toml::from_str(text).map_err(|e| MappingError::Syntax(e.to_string()))?;
        Self::validate(file)
    }

    fn validate(file: MappingFile) -> Result<Self, MappingError> {
        let mut airtable_names = HashSet::new();
        for (name, t) in &file.tables {
            if registry::table(name).is_none() {
                return Err(MappingError::UnknownTable(name.clone()));
            }
            if !airtable_names.insert(t.airtable.clone()) {
                return Err(MappingError::DuplicateTable(t.airtable.clone()));
            }
        }
        let mut tables = Vec::new();
        // Registry order is dependency order.
        for table in registry::TABLES {
            let Some(t) = file.tables.get(table.name) else { continue };
            let mut fields_seen = HashSet::from([file.merge_field.clone()]);
            let mut columns = Vec::new();
            let check_field = |column: &str,
                               f: &FieldMapping,
                               seen: &mut HashSet<String>|
             -> Result<(), MappingError> {
                let (tn, cn) = (table.name.to_owned(), column.to_owned());
                if let FieldKind::Unsupported(kind) = &f.kind {
                    return Err(MappingError::UnsupportedType {
                        table: tn,
                        column: cn,
                        kind: kind.clone(),
                    });
                }
                if (f.kind == FieldKind::MultipleRecordLinks) != f.link.is_some() {
                    return Err(MappingError::LinkType { table: tn, column: cn });
                }
                if let Some(link) = &f.link {
                    if !file.tables.contains_key(link) {
                        return Err(MappingError::UnknownLink {
                            table: tn,
                            column: cn,
                            link: link.clone(),
                        });
                    }
                }
                if !seen.insert(f.field.clone()) {
                    return Err(MappingError::DuplicateField { table: tn, field: f.field.clone() });
                }
                Ok(())
            };
            for c in table.columns {
                if let Some(f) = t.fields.get(c.name) {
                    if c.secret {
                        return Err(MappingError::Secret {
                            table: table.name.into(),
                            column: c.name.into(),
                        });
                    }
                    check_field(c.name, f, &mut fields_seen)?;
                    columns.push(MappedColumn {
                        column: c.name.to_owned(),
                        field: f.clone(),
                        owner: c.owner,
                    });
                }
            }
            for column in t.fields.keys() {
                if table.column(column).is_none() {
                    return Err(MappingError::UnknownColumn {
                        table: table.name.into(),
                        column: column.clone(),
                    });
                }
            }
            let mut derived = Vec::new();
            for (column, f) in &t.derived {
                check_field(column, f, &mut fields_seen)?;
                derived.push((column.clone(), f.clone()));
            }
            tables.push(MappedTable { table, airtable: t.airtable.clone(), columns, derived });
        }
        Ok(Self { merge_field: file.merge_field, tables })
    }

    pub fn table(&self, name: &str) -> Option<&MappedTable> {
        self.tables.iter().find(|t| t.table.name == name)
    }

    pub fn by_airtable(&self, airtable: &str) -> Option<&MappedTable> {
        self.tables.iter().find(|t| t.airtable == airtable)
    }

    /// The Airtable base this mapping expects, in the Meta API's shape (a schema file for
    /// the emulator; the daemon compares the real base against the same fields).
    pub fn airtable_schema(&self, base_id: &str, base_name: &str) -> Value {
        let tables: Vec<Value> = self
            .tables
            .iter()
            .map(|t| {
                let mut fields = vec![json!({ "name": self.merge_field, "type": "singleLineText" })];
                for (f, _) in t.columns.iter().map(|c| (&c.field, ())).chain(t.derived.iter().map(|(_, f)| (f, ()))) {
                    let mut field = json!({ "name": f.field, "type": f.kind.as_str() });
                    if let Some(link) = &f.link {
                        let target = self.table(link).map(|l| l.airtable.clone()).unwrap_or_default();
                        field["options"] = json!({ "linkedTable": target });
                    } else if !f.choices.is_empty() {
                        field["options"] = json!({ "choices": f.choices.iter().map(|c| json!({ "name": c })).collect::<Vec<_>>() });
                    }
                    fields.push(field);
                }
                json!({ "name": t.airtable, "primary_field": self.merge_field, "fields": fields })
            })
            .collect();
        json!({ "bases": [{ "id": base_id, "name": base_name, "tables": tables }] })
    }
}

impl MappedTable {
    /// Columns written to Airtable (Postgres-owned).
    pub fn outbound(&self) -> impl Iterator<Item = &MappedColumn> {
        self.columns.iter().filter(|c| c.owner == Owner::Postgres)
    }

    /// Columns read from Airtable (Airtable-owned).
    pub fn inbound(&self) -> impl Iterator<Item = &MappedColumn> {
        self.columns.iter().filter(|c| c.owner == Owner::Airtable)
    }

    pub fn column(&self, name: &str) -> Option<&MappedColumn> {
        self.columns.iter().find(|c| c.column == name)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn published_tables_are_the_operational_and_mixed_ones_and_the_outbox() {
        let m = Mapping::default_mapping().expect("mapping");
        let published: Vec<String> = m.published_tables().into_iter().map(|(_, t)| t).collect();
        for t in crate::registry::TABLES {
            let expected = matches!(
                t.kind,
                crate::registry::TableKind::Operational | crate::registry::TableKind::Mixed
            ) || t.name == "sync_outbox";
            assert_eq!(published.iter().any(|p| p == t.name), expected, "{}", t.name);
        }
    }

    use super::*;

    #[test]
    fn the_default_mapping_is_valid_and_ordered_parents_first() {
        let m = Mapping::default_mapping().expect("valid");
        let names: Vec<&str> = m.tables.iter().map(|t| t.table.name).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).expect(n);
        assert!(
            pos("users") < pos("programs")
                && pos("programs") < pos("program_schedule")
                && pos("program_schedule") < pos("method_usage")
        );
        assert!(m.table("users").expect("users").column("password_hash").is_none());
        assert_eq!(m.table("programs").expect("programs").derived.len(), 3);
        // Every operational and mixed table is mapped, with at least one field each way where it owns one.
        for t in registry::TABLES.iter().filter(|t| {
            matches!(t.kind, registry::TableKind::Operational | registry::TableKind::Mixed)
        }) {
            let mt = m.table(t.name).unwrap_or_else(|| panic!("{} is not mapped", t.name));
            assert!(mt.outbound().next().is_some(), "{}", t.name);
        }
        assert_eq!(
            m.table("personal_goals")
                .expect("pg")
                .inbound()
                .map(|c| c.column.as_str())
                .collect::<Vec<_>>(),
            ["coach_feedback"]
        );
    }

    #[test]
    fn invalid_mappings_name_the_table_and_field() {
        let bad = |extra: &str| {
            Mapping::parse(&format!("merge_field = \"pg_id\"\n{extra}")).expect_err(extra)
        };
        assert_eq!(
            bad("[tables.nope]\nairtable = \"N\"\nfields = {}"),
            MappingError::UnknownTable("nope".into())
        );
        assert_eq!(
            bad("[tables.users]\nairtable = \"U\"\nfields.password_hash = { field = \"P\", type = \"singleLineText\" }"),
            MappingError::Secret { table: "users".into(), column: "password_hash".into() }
        );
        assert_eq!(
            bad("[tables.users]\nairtable = \"U\"\nfields.nope = { field = \"P\", type = \"singleLineText\" }"),
            MappingError::UnknownColumn { table: "users".into(), column: "nope".into() }
        );
        assert!(matches!(bad("[tables.users]\nairtable = \"U\"\nfields.company_id = { field = \"C\", type = \"multipleRecordLinks\", link = \"companies\" }"), MappingError::UnknownLink { .. }));
        assert!(matches!(bad("[tables.users]\nairtable = \"U\"\nfields.email = { field = \"pg_id\", type = \"email\" }"), MappingError::DuplicateField { .. }));
        assert!(matches!(bad("[tables.users]\nairtable = \"U\"\nfields.email = { field = \"E\", type = \"formula\" }"), MappingError::UnsupportedType { .. }));
        assert!(matches!(bad("[tables.users]\nairtable = \"U\"\nfields.email = { field = \"E\", type = \"email\", colour = 1 }"), MappingError::Syntax(_)));
    }

    #[test]
    fn the_airtable_schema_has_the_merge_field_links_and_choices() {
        let m = Mapping::default_mapping().expect("valid");
        let s = m.airtable_schema("appTEST0000000001", "Coach");
        let tables = s["bases"][0]["tables"].as_array().expect("tables");
        let programs = tables.iter().find(|t| t["name"] == "Programs").expect("programs");
        assert_eq!(programs["fields"][0], json!({ "name": "pg_id", "type": "singleLineText" }));
        assert!(programs["fields"]
            .as_array()
            .expect("f")
            .iter()
            .any(|f| f["name"] == "User" && f["options"]["linkedTable"] == "Users"));
        assert!(programs["fields"]
            .as_array()
            .expect("f")
            .iter()
            .any(|f| f["name"] == "Progress %"));
    }
}
