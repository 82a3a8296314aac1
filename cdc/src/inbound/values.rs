//! Airtable cells (records API format, V1) to Postgres values (as JSON that
//! `jsonb_populate_record` turns into the column types), by the mapped field type.

use chrono::{DateTime, NaiveDate};
use schema::mapping::FieldKind;
use schema::mapping::{MappedColumn, MappedTable};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// Why a record cannot be applied (the dead-letter code and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ValueError {
    pub code: &'static str,
    pub message: String,
}

impl ValueError {
    pub fn invalid(message: String) -> Self {
        Self { code: "INVALID_VALUE", message }
    }
}

/// A webhook (V2) cell as the records API (V1) has it, so payload cells apply without a
/// re-read: selects carry `{id, name, color}` where V1 has the name, links `{id, name}` where
/// V1 has the record id. None: the cell is not in a shape this type has in V2 (re-read it).
pub fn from_payload(kind: &FieldKind, v: &Value) -> Option<Value> {
    let name = |o: &Value| o.get("name").and_then(Value::as_str).map(|n| json!(n));
    let id = |o: &Value| o.get("id").and_then(Value::as_str).map(|n| json!(n));
    let each = |f: &dyn Fn(&Value) -> Option<Value>| match v {
        Value::Array(a) => a.iter().map(f).collect::<Option<Vec<_>>>().map(Value::Array),
        _ => None,
    };
    match (kind, v) {
        (_, Value::Null) => Some(Value::Null),
        (FieldKind::SingleSelect, Value::Object(_)) => name(v),
        (FieldKind::MultipleSelects, _) => each(&name),
        (FieldKind::MultipleRecordLinks, _) => each(&id),
        (FieldKind::SingleSelect | FieldKind::Unsupported(_), _) => None,
        // Every other supported type has the same value in both formats.
        _ => Some(v.clone()),
    }
}

/// How a link column holds its links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkShape {
    /// `uuid`: at most one link.
    One,
    /// `uuid[]`.
    Many,
}

/// What converting needs to know about the Postgres side.
pub struct Columns<'a> {
    /// (table, column) -> whether it is an integer column.
    pub integer: &'a (dyn Fn(&str, &str) -> bool + Sync),
    pub link_shape: &'a (dyn Fn(&str, &str) -> LinkShape + Sync),
    /// (target table, record id) -> pg id, for every link of the record.
    pub links: &'a HashMap<(String, String), Uuid>,
}

/// The `columns` of `table` (the Airtable-owned ones, or all for an import) from `fields` (by
/// Airtable field name). A complete record sets every column (absent = empty, as Airtable
/// leaves empty cells out); a partial one only the fields present.
pub fn row_values<'t>(
    table: &'t MappedTable,
    columns: impl Iterator<Item = &'t MappedColumn>,
    fields: &Map<String, Value>,
    complete: bool,
    cols: &Columns<'_>,
) -> Result<Map<String, Value>, ValueError> {
    let mut out = Map::new();
    for c in columns {
        let v = match fields.get(&c.field.field) {
            Some(v) => v,
            None if complete => &Value::Null,
            None => continue,
        };
        let name = &c.field.field;
        let value = match &c.field.link {
            Some(target) => {
                let ids = link_ids(name, v)?;
                let mut pg = Vec::with_capacity(ids.len());
                for rid in ids {
                    match cols.links.get(&(target.clone(), rid.to_owned())) {
                        Some(id) => pg.push(json!(id)),
                        None => {
                            return Err(ValueError {
                                code: "UNKNOWN_LINK",
                                message: format!("{name}: linked record {rid} is not in {target}"),
                            })
                        }
                    }
                }
                match (cols.link_shape)(table.table.name, &c.column) {
                    // An empty link cell is an empty array, never null.
                    LinkShape::Many => Value::Array(pg),
                    LinkShape::One if pg.len() > 1 => {
                        return Err(ValueError::invalid(format!(
                            "{name}: {} linked records, Postgres holds one",
                            pg.len()
                        )))
                    }
                    LinkShape::One => pg.pop().unwrap_or(Value::Null),
                }
            }
            None => scalar(&c.field.kind, name, v, (cols.integer)(table.table.name, &c.column))?,
        };
        out.insert(c.column.clone(), value);
    }
    Ok(out)
}

fn link_ids<'v>(name: &str, v: &'v Value) -> Result<Vec<&'v str>, ValueError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .filter(|s| s.starts_with("rec"))
                    .ok_or_else(|| ValueError::invalid(format!("{name}: {x} is not a record id")))
            })
            .collect(),
        other => Err(ValueError::invalid(format!("{name}: {other} is not a list of record ids"))),
    }
}

fn scalar(kind: &FieldKind, name: &str, v: &Value, integer: bool) -> Result<Value, ValueError> {
    let bad = || ValueError::invalid(format!("{name}: {v} does not fit a {kind} field"));
    if v.is_null() {
        return Ok(if *kind == FieldKind::Checkbox { json!(false) } else { Value::Null });
    }
    Ok(match kind {
        k if k.is_text() => match v {
            Value::String(s) if s.is_empty() => Value::Null,
            Value::String(_) => v.clone(),
            _ => return Err(bad()),
        },
        FieldKind::Number => {
            let n = v.as_f64().ok_or_else(bad)?;
            if integer {
                if n.fract() != 0.0 || n.abs() > i32::MAX as f64 {
                    return Err(ValueError::invalid(format!(
                        "{name}: {v} is not an integer, Postgres holds integers"
                    )));
                }
                json!(n as i64)
            } else {
                v.clone()
            }
        }
        FieldKind::Checkbox => match v {
            Value::Bool(_) => v.clone(),
            _ => return Err(bad()),
        },
        FieldKind::Date => {
            let s = v.as_str().ok_or_else(bad)?;
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
            v.clone()
        }
        FieldKind::DateTime => {
            let s = v.as_str().ok_or_else(bad)?;
            DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
            v.clone()
        }
        _ => return Err(ValueError::invalid(format!("{name}: unsupported field type {kind}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::mapping::Mapping;

    fn convert(
        table: &str,
        fields: Value,
        complete: bool,
        links: &HashMap<(String, String), Uuid>,
    ) -> Result<Map<String, Value>, ValueError> {
        let m = Mapping::default_mapping().expect("mapping");
        let t = m.table(table).expect("table");
        let integer = |_: &str, c: &str| c == "sort_order" || c == "level";
        let shape =
            |_: &str, c: &str| if c.ends_with("_ids") { LinkShape::Many } else { LinkShape::One };
        let cols = Columns { integer: &integer, link_shape: &shape, links };
        row_values(t, t.inbound(), fields.as_object().expect("object"), complete, &cols)
    }

    #[test]
    fn payload_cells_become_records_api_cells() {
        let select = json!({ "id": "selA", "name": "coach", "color": "blueLight2" });
        assert_eq!(from_payload(&FieldKind::SingleSelect, &select), Some(json!("coach")));
        assert_eq!(from_payload(&FieldKind::SingleSelect, &json!("coach")), None);
        let selects = json!([{ "id": "selA", "name": "a" }, { "id": "selB", "name": "b" }]);
        assert_eq!(from_payload(&FieldKind::MultipleSelects, &selects), Some(json!(["a", "b"])));
        let links = json!([{ "id": "recCOMPANY0000001", "name": "Acme" }]);
        assert_eq!(
            from_payload(&FieldKind::MultipleRecordLinks, &links),
            Some(json!(["recCOMPANY0000001"]))
        );
        assert_eq!(from_payload(&FieldKind::MultipleRecordLinks, &json!([{ "name": "x" }])), None);
        assert_eq!(from_payload(&FieldKind::MultipleRecordLinks, &Value::Null), Some(Value::Null));
        assert_eq!(from_payload(&FieldKind::Number, &json!(4)), Some(json!(4)));
        assert_eq!(from_payload(&FieldKind::Unsupported("formula".into()), &json!(1)), None);
    }

    #[test]
    fn complete_records_set_every_owned_column_and_empty_cells_clear() {
        let company = Uuid::new_v4();
        let links =
            HashMap::from([(("companies".to_owned(), "recCOMPANY0000001".to_owned()), company)]);
        let row = convert(
            "users",
            json!({ "Email": "a@b.nl", "Company": ["recCOMPANY0000001"], "Role": "coach", "Bonus points": 7 }),
            true,
            &links,
        )
        .expect("row");
        assert_eq!(row["email"], json!("a@b.nl"));
        assert_eq!(row["company_id"], json!(company));
        assert_eq!(row["role"], json!("coach"));
        assert_eq!(row["name"], Value::Null);
        // Postgres-owned fields are never read back.
        assert!(!row.contains_key("bonus_points"));
    }

    #[test]
    fn partial_changes_touch_only_their_columns() {
        let row = convert("goals", json!({ "Order": 3.0 }), false, &HashMap::new()).expect("row");
        assert_eq!(row.len(), 1);
        assert_eq!(row["sort_order"], json!(3));
        let row = convert("goals", json!({}), true, &HashMap::new()).expect("row");
        assert_eq!(row["is_active"], json!(false));
        let row = convert("methods", json!({ "Name": "x" }), true, &HashMap::new()).expect("row");
        assert_eq!(row["goal_ids"], json!([]), "an empty link cell is an empty array");
    }

    #[test]
    fn wrong_types_and_unknown_links_are_refused_with_a_code() {
        let e = convert("goals", json!({ "Order": "first" }), false, &HashMap::new()).unwrap_err();
        assert_eq!(e.code, "INVALID_VALUE");
        let e = convert("goals", json!({ "Order": 1.5 }), false, &HashMap::new()).unwrap_err();
        assert!(e.message.contains("integer"), "{e}");
        let e =
            convert("users", json!({ "Company": ["recNOPE0000000001"] }), false, &HashMap::new())
                .unwrap_err();
        assert_eq!(e.code, "UNKNOWN_LINK");
        let e = convert("users", json!({ "Company": "recNOPE0000000001" }), false, &HashMap::new())
            .unwrap_err();
        assert_eq!(e.code, "INVALID_VALUE");
        let e = convert("goals", json!({ "Active": "yes" }), false, &HashMap::new()).unwrap_err();
        assert_eq!(e.code, "INVALID_VALUE");
    }
}
