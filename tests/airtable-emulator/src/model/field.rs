//! Field types and what each accepts on write.

use crate::{clock::iso, error::ApiError, ids};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub options: Value,
}

/// How a field type behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Text,
    Number,
    Checkbox,
    Date,
    DateTime,
    SingleSelect,
    MultiSelect,
    Links,
    Object,
    Array,
    /// Read-only: any write is INVALID_VALUE_FOR_COLUMN.
    Computed,
}

pub fn class_of(kind: &str) -> Class {
    match kind {
        "singleLineText" | "multilineText" | "email" | "url" | "phoneNumber" | "richText" => {
            Class::Text
        }
        "number" | "currency" | "percent" | "duration" | "rating" => Class::Number,
        "checkbox" => Class::Checkbox,
        "date" => Class::Date,
        "dateTime" => Class::DateTime,
        "singleSelect" => Class::SingleSelect,
        "multipleSelects" => Class::MultiSelect,
        "multipleRecordLinks" => Class::Links,
        "singleCollaborator" | "barcode" => Class::Object,
        "multipleCollaborators" | "multipleAttachments" => Class::Array,
        _ => Class::Computed,
    }
}

/// Types whose values may be merged on in performUpsert.
pub fn mergeable(kind: &str) -> bool {
    matches!(
        kind,
        "number"
            | "singleLineText"
            | "multilineText"
            | "singleSelect"
            | "multipleSelects"
            | "date"
            | "email"
            | "url"
            | "phoneNumber"
    )
}

/// Empty values are never stored nor returned (`""`, `[]`, `false`, `null`).
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The outcome of validating one written value: what to store (None clears the cell) and
/// which select choices typecast must add.
#[derive(Debug, Default)]
pub struct Coerced {
    pub value: Option<Value>,
    pub new_choices: Vec<String>,
}

impl Field {
    pub fn class(&self) -> Class {
        class_of(&self.kind)
    }

    pub fn is_computed(&self) -> bool {
        self.class() == Class::Computed
    }

    pub fn choices(&self) -> Vec<&Value> {
        self.options
            .get("choices")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    }

    fn has_choice(&self, name: &str) -> bool {
        self.choices().iter().any(|c| c.get("name").and_then(Value::as_str) == Some(name))
    }

    pub fn add_choice(&mut self, name: &str) {
        if self.has_choice(name) {
            return;
        }
        if !self.options.is_object() {
            self.options = json!({});
        }
        let choice = json!({ "id": ids::new_id("sel"), "name": name, "color": "blueLight2" });
        match self.options.get_mut("choices").and_then(Value::as_array_mut) {
            Some(list) => list.push(choice),
            None => self.options["choices"] = json!([choice]),
        }
    }

    pub fn linked_table_id(&self) -> Option<&str> {
        self.options.get("linkedTableId").and_then(Value::as_str)
    }

    /// Validates a value written to this field (V1 write format), converting it with
    /// `typecast` where Airtable would.
    pub fn coerce(&self, value: &Value, typecast: bool) -> Result<Coerced, ApiError> {
        let bad = || ApiError::invalid_value(&self.name);
        if self.is_computed() {
            return Err(ApiError::computed_field(&self.name));
        }
        if value.is_null() {
            return Ok(Coerced::default());
        }
        let mut out = Coerced::default();
        let stored = match self.class() {
            Class::Text => match value {
                Value::String(s) => Value::String(s.clone()),
                Value::Number(n) if typecast => Value::String(n.to_string()),
                Value::Bool(b) if typecast => Value::String(b.to_string()),
                _ => return Err(bad()),
            },
            Class::Number => match value {
                Value::Number(_) => value.clone(),
                Value::String(s) if typecast => {
                    let t = s.trim();
                    if t.is_empty() {
                        Value::Null
                    } else {
                        let n: f64 = t.parse().map_err(|_| bad())?;
                        json!(n)
                    }
                }
                _ => return Err(bad()),
            },
            Class::Checkbox => match value {
                Value::Bool(b) => Value::Bool(*b),
                Value::String(s) if typecast => Value::Bool(matches!(
                    s.trim().to_ascii_lowercase().as_str(),
                    "true" | "1" | "yes" | "checked"
                )),
                Value::Number(n) if typecast => Value::Bool(n.as_f64() != Some(0.0)),
                _ => return Err(bad()),
            },
            Class::Date => match value {
                Value::String(s) => {
                    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                        Value::String(d.format("%Y-%m-%d").to_string())
                    } else if typecast {
                        let t = parse_datetime(s).ok_or_else(bad)?;
                        Value::String(t.date_naive().format("%Y-%m-%d").to_string())
                    } else {
                        return Err(bad());
                    }
                }
                _ => return Err(bad()),
            },
            Class::DateTime => match value {
                Value::String(s) => Value::String(iso(parse_datetime(s).ok_or_else(bad)?)),
                Value::Number(n) => {
                    let ms = n.as_i64().ok_or_else(bad)?;
                    Value::String(iso(DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(bad)?))
                }
                _ => return Err(bad()),
            },
            Class::SingleSelect => match value {
                Value::String(s) => {
                    self.check_choice(s, typecast, &mut out)?;
                    Value::String(s.clone())
                }
                _ => return Err(bad()),
            },
            Class::MultiSelect => match value {
                Value::Array(items) => {
                    let mut names = Vec::new();
                    for item in items {
                        let s = item.as_str().ok_or_else(bad)?;
                        self.check_choice(s, typecast, &mut out)?;
                        if !names.iter().any(|n: &Value| n == item) {
                            names.push(item.clone());
                        }
                    }
                    Value::Array(names)
                }
                Value::String(s) if typecast => {
                    let mut names = Vec::new();
                    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                        self.check_choice(part, typecast, &mut out)?;
                        names.push(Value::String(part.to_owned()));
                    }
                    Value::Array(names)
                }
                _ => return Err(bad()),
            },
            Class::Links => {
                let not_ids = || {
                    ApiError::unprocessable("INVALID_VALUE_FOR_COLUMN", format!("Field \"{}\" cannot accept the provided value: Value is not an array of record IDs.", self.name))
                };
                match value {
                    Value::Array(items) => {
                        let mut list: Vec<Value> = Vec::new();
                        for item in items {
                            let id = match item {
                                Value::String(s) => s.as_str(),
                                Value::Object(o) => {
                                    o.get("id").and_then(Value::as_str).ok_or_else(not_ids)?
                                }
                                _ => return Err(not_ids()),
                            };
                            if !ids::is_id(id, "rec") {
                                return Err(not_ids());
                            }
                            if !list.iter().any(|v| v.as_str() == Some(id)) {
                                list.push(Value::String(id.to_owned()));
                            }
                        }
                        Value::Array(list)
                    }
                    _ => return Err(not_ids()),
                }
            }
            Class::Object => match value {
                Value::Object(_) => value.clone(),
                _ => return Err(bad()),
            },
            Class::Array => match value {
                Value::Array(_) => value.clone(),
                _ => return Err(bad()),
            },
            Class::Computed => return Err(ApiError::computed_field(&self.name)),
        };
        out.value = (!is_empty(&stored)).then_some(stored);
        Ok(out)
    }

    fn check_choice(&self, name: &str, typecast: bool, out: &mut Coerced) -> Result<(), ApiError> {
        if self.has_choice(name) || out.new_choices.iter().any(|c| c == name) {
            return Ok(());
        }
        if typecast {
            out.new_choices.push(name.to_owned());
            return Ok(());
        }
        Err(ApiError::unprocessable(
            "INVALID_MULTIPLE_CHOICE_OPTIONS",
            format!("Insufficient permissions to create new select option \"\"{name}\"\""),
        ))
    }

    /// The Meta API's description of this field.
    pub fn meta(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name));
        m.insert("type".into(), json!(self.kind));
        if self.options.as_object().is_some_and(|o| !o.is_empty()) {
            m.insert("options".into(), self.options.clone());
        }
        Value::Object(m)
    }
}

/// ISO-8601 with or without offset (naive times are UTC), or a plain date.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
    {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// What a string looks like as a field when the schema is inferred from use.
pub fn infer_kind(value: &Value) -> &'static str {
    match value {
        Value::Number(_) => "number",
        Value::Bool(_) => "checkbox",
        Value::Array(items)
            if items.iter().all(|v| v.as_str().is_some_and(|s| ids::is_id(s, "rec")))
                && !items.is_empty() =>
        {
            "multipleRecordLinks"
        }
        Value::Array(items) if items.iter().all(Value::is_string) => "multipleSelects",
        Value::Array(_) => "multipleAttachments",
        Value::Object(_) => "barcode",
        Value::String(s) if s.contains('\n') => "multilineText",
        _ => "singleLineText",
    }
}
