//! Schema writes (Meta API, scope `schema.bases:write`): create tables and fields, rename
//! them. Options are checked as strictly as the contract says (§8.1): each type takes exactly
//! the options it needs. Ids never change on a rename.

use super::{field::class_of, field::Class, table::Table, Base};
use crate::{error::ApiError, ids, model::field::Field};
use serde_json::{json, Map, Value};

/// What a field definition (`{name, type, description?, options?}`) must look like.
fn parse_field(def: &Value) -> Result<(String, String, Value), ApiError> {
    let name = def
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid_request("a field needs a non-empty name"))?;
    let kind = def
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_request(format!("field \"{name}\" needs a type")))?;
    if let Some(k) = def.as_object().and_then(|o| {
        o.keys().find(|k| !matches!(k.as_str(), "name" | "type" | "description" | "options"))
    }) {
        return Err(ApiError::invalid_request(format!("field \"{name}\": unknown property {k}")));
    }
    let options = def.get("options").cloned();
    let bad = |why: &str| ApiError::invalid_request(format!("field \"{name}\" ({kind}): {why}"));
    let need = |keys: &[&str]| -> Result<Value, ApiError> {
        let o = options
            .as_ref()
            .and_then(Value::as_object)
            .ok_or_else(|| bad("options are required"))?;
        for k in keys {
            if !o.contains_key(*k) {
                return Err(bad(&format!("options.{k} is required")));
            }
        }
        if let Some(extra) = o.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(bad(&format!("options.{extra} is not allowed")));
        }
        Ok(Value::Object(o.clone()))
    };
    let options = match kind {
        "singleLineText" | "multilineText" | "email" | "url" | "phoneNumber" => {
            if options.is_some() {
                return Err(bad("this type takes no options"));
            }
            json!({})
        }
        "number" => {
            let o = need(&["precision"])?;
            if o["precision"].as_u64().is_none_or(|p| p > 8) {
                return Err(bad("precision must be 0 to 8"));
            }
            o
        }
        "checkbox" => need(&["icon", "color"])?,
        "date" => need(&["dateFormat"])?,
        "dateTime" => need(&["dateFormat", "timeFormat", "timeZone"])?,
        "singleSelect" | "multipleSelects" => {
            let mut o = need(&["choices"])?;
            let choices =
                o["choices"].as_array().cloned().ok_or_else(|| bad("choices must be a list"))?;
            let mut out = Vec::new();
            for c in choices {
                let n = c
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a choice needs a name"))?;
                out.push(json!({ "id": ids::new_id("sel"), "name": n, "color": "blueLight2" }));
            }
            o["choices"] = Value::Array(out);
            o
        }
        "multipleRecordLinks" => need(&["linkedTableId"])?,
        other if class_of(other) == Class::Computed => {
            return Err(ApiError::invalid_request(format!(
                "field \"{name}\": type {other} cannot be created through the API"
            )))
        }
        other => return Err(bad(&format!("type {other} is not supported here"))),
    };
    Ok((name.to_owned(), kind.to_owned(), options))
}

fn duplicate(name: &str) -> ApiError {
    ApiError::unprocessable(
        "DUPLICATE_OR_EMPTY_FIELD_NAME",
        format!("Field names must be unique and non-empty: \"{name}\""),
    )
}

fn name_taken(table: &Table, name: &str) -> bool {
    table.fields.iter().any(|f| f.name.eq_ignore_ascii_case(name))
}

impl Base {
    /// `POST /v0/meta/bases/{base}/tables`: the first field is the primary field.
    pub fn create_table(&mut self, body: &Value) -> Result<Value, ApiError> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::invalid_request("a table needs a non-empty name"))?;
        if self.tables.iter().any(|t| t.name.eq_ignore_ascii_case(name)) {
            return Err(ApiError::unprocessable(
                "DUPLICATE_TABLE_NAME",
                format!("A table named \"{name}\" already exists"),
            ));
        }
        let defs = body
            .get("fields")
            .and_then(Value::as_array)
            .filter(|f| !f.is_empty())
            .ok_or_else(|| ApiError::invalid_request("a table needs at least one field"))?;
        let first_kind = defs[0].get("type").and_then(Value::as_str).unwrap_or_default();
        if first_kind == "multipleRecordLinks" || class_of(first_kind) == Class::Computed {
            return Err(ApiError::invalid_request(format!(
                "type {first_kind} cannot be a table's primary field"
            )));
        }
        let mut table = Table::new(ids::new_id("tbl"), name.to_owned(), Vec::new(), false);
        table.description = body.get("description").and_then(Value::as_str).map(str::to_owned);
        self.tables.push(table);
        let ti = self.tables.len() - 1;
        for def in defs {
            if let Err(e) = self.create_field(ti, def) {
                self.tables.pop();
                return Err(e);
            }
        }
        self.tables[ti].primary_field_id = self.tables[ti].fields[0].id.clone();
        Ok(self.tables[ti].meta())
    }

    /// `POST /v0/meta/bases/{base}/tables/{table}/fields`.
    pub fn create_field(&mut self, ti: usize, def: &Value) -> Result<Value, ApiError> {
        let (name, kind, mut options) = parse_field(def)?;
        if name_taken(&self.tables[ti], &name) {
            return Err(duplicate(&name));
        }
        let id = ids::new_id("fld");
        if kind == "multipleRecordLinks" {
            let linked = options["linkedTableId"].as_str().unwrap_or_default().to_owned();
            let li = self
                .tables
                .iter()
                .position(|t| t.id == linked)
                .ok_or_else(|| ApiError::invalid_request(format!("no table {linked}")))?;
            // Airtable adds the inverse field in the linked table, named after this one.
            let source = self.tables[ti].name.clone();
            let mut inverse_name = source.clone();
            let mut n = 2;
            while name_taken(&self.tables[li], &inverse_name) || (li == ti && inverse_name == name)
            {
                inverse_name = format!("{source} {n}");
                n += 1;
            }
            let inverse_id = ids::new_id("fld");
            options = json!({ "linkedTableId": linked, "isReversed": false,
                              "prefersSingleRecordLink": false, "inverseLinkFieldId": inverse_id });
            let source_id = self.tables[ti].id.clone();
            self.tables[li].fields.push(Field {
                id: inverse_id,
                name: inverse_name,
                kind: kind.clone(),
                options: json!({ "linkedTableId": source_id, "isReversed": false,
                                 "prefersSingleRecordLink": false, "inverseLinkFieldId": id }),
            });
        }
        let field = Field { id, name, kind, options };
        let meta = field.meta();
        self.tables[ti].fields.push(field);
        Ok(meta)
    }

    /// `PATCH /v0/meta/bases/{base}/tables/{table}`: name and description only.
    pub fn patch_table(&mut self, ti: usize, body: &Value) -> Result<Value, ApiError> {
        let o = patch_body(body)?;
        if let Some(name) = o.get("name").and_then(Value::as_str) {
            if self
                .tables
                .iter()
                .enumerate()
                .any(|(i, t)| i != ti && t.name.eq_ignore_ascii_case(name))
            {
                return Err(ApiError::unprocessable(
                    "DUPLICATE_TABLE_NAME",
                    format!("A table named \"{name}\" already exists"),
                ));
            }
            self.tables[ti].name = name.to_owned();
        }
        if let Some(d) = o.get("description").and_then(Value::as_str) {
            self.tables[ti].description = Some(d.to_owned());
        }
        Ok(self.tables[ti].meta())
    }

    /// `PATCH /v0/meta/bases/{base}/tables/{table}/fields/{field}`: a type never changes.
    pub fn patch_field(&mut self, ti: usize, field: &str, body: &Value) -> Result<Value, ApiError> {
        let o = patch_body(body)?;
        let fid = self.tables[ti]
            .fields
            .iter()
            .find(|f| f.id == field)
            .map(|f| f.id.clone())
            .ok_or_else(ApiError::model_not_found)?;
        if let Some(name) = o.get("name").and_then(Value::as_str) {
            let taken = self.tables[ti]
                .fields
                .iter()
                .any(|f| f.id != fid && f.name.eq_ignore_ascii_case(name));
            if taken || name.trim().is_empty() {
                return Err(duplicate(name));
            }
            if let Some(f) = self.tables[ti].field_mut(&fid) {
                f.name = name.to_owned();
            }
        }
        // Descriptions are accepted and not kept: nothing here reads them.
        let f = self.tables[ti].field_mut(&fid).ok_or_else(ApiError::model_not_found)?;
        Ok(f.meta())
    }
}

/// A PATCH body: `name` and/or `description`, nothing else.
fn patch_body(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    let o =
        body.as_object().ok_or_else(|| ApiError::invalid_request("the body must be an object"))?;
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "name" | "description")) {
        return Err(ApiError::invalid_request(format!("{k} cannot be changed through the API")));
    }
    Ok(o)
}
