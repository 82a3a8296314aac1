//! The base's schema as the Meta API describes it (`GET /v0/meta/bases/{base}/tables`),
//! parsed once, typed, for both directions.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BaseMeta {
    #[serde(default)]
    pub tables: Vec<TableMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TableMeta {
    pub id: String,
    pub name: String,
    #[serde(rename = "primaryFieldId", default)]
    pub primary_field_id: Option<String>,
    #[serde(default)]
    pub fields: Vec<FieldMeta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldMeta {
    pub id: String,
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub options: Value,
}

impl BaseMeta {
    /// The Meta API's answer; tables or fields it cannot read are left out.
    pub fn from_json(v: &Value) -> Self {
        let tables = v["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| serde_json::from_value::<TableMeta>(t.clone()).ok())
            .collect();
        Self { tables }
    }

    /// A table by name or id (the mapping may name either).
    pub fn table(&self, name_or_id: &str) -> Option<&TableMeta> {
        self.tables.iter().find(|t| t.name == name_or_id || t.id == name_or_id)
    }
}

impl TableMeta {
    pub fn field(&self, name: &str) -> Option<&FieldMeta> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_fields_by_name_or_id() {
        let m = BaseMeta::from_json(&serde_json::json!({ "tables": [
            { "id": "tblA", "name": "Users", "primaryFieldId": "fld1",
              "fields": [{ "id": "fld1", "name": "Email", "type": "email" }] },
            { "name": "no id: left out" }
        ]}));
        assert_eq!(m.tables.len(), 1);
        let t = m.table("tblA").expect("by id");
        assert_eq!(m.table("Users").map(|t| &t.id), Some(&t.id));
        assert_eq!(t.field("Email").map(|f| f.kind.as_str()), Some("email"));
        assert_eq!(t.primary_field_id.as_deref(), Some("fld1"));
    }
}
