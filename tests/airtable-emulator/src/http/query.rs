//! Query strings with Airtable's bracket parameters (`fields[]=`, `sort[0][field]=`),
//! percent-encoded or raw.

use crate::{
    error::ApiError,
    model::{ListParams, SortSpec},
};
use serde_json::Value;
use std::collections::BTreeMap;

pub fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn flag(v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" | "" => Ok(false),
        _ => Err(ApiError::invalid_request(format!("expected a boolean, got {v:?}"))),
    }
}

fn number(name: &str, v: &str) -> Result<usize, ApiError> {
    v.parse().map_err(|_| ApiError::invalid_request(format!("{name} must be a whole number")))
}

/// List parameters from a GET query string.
pub fn list_params_from_query(pairs: &[(String, String)]) -> Result<ListParams, ApiError> {
    let mut p = ListParams::default();
    let mut sorts: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut cell_format = None;
    let (mut tz, mut locale) = (false, false);
    for (k, v) in pairs {
        match k.as_str() {
            "pageSize" => p.page_size = Some(number(k, v)?),
            "maxRecords" => p.max_records = Some(number(k, v)?),
            "offset" => p.offset = Some(v.clone()),
            "view" => p.view = Some(v.clone()),
            "filterByFormula" => p.filter = Some(v.clone()),
            "fields[]" | "fields" => p.fields.get_or_insert_with(Vec::new).push(v.clone()),
            "returnFieldsByFieldId" => p.by_field_id = flag(v)?,
            "recordMetadata[]" | "recordMetadata" => p.comment_count |= v == "commentCount",
            "cellFormat" => cell_format = Some(v.clone()),
            "timeZone" => tz = true,
            "userLocale" => locale = true,
            k if k.starts_with("sort[") => {
                let inner = &k[5..];
                let (index, rest) = inner
                    .split_once(']')
                    .ok_or_else(|| ApiError::invalid_request("bad sort parameter"))?;
                let index: usize = number("sort index", index)?;
                let entry = sorts.entry(index).or_default();
                match rest {
                    "[field]" => entry.0 = Some(v.clone()),
                    "[direction]" => entry.1 = Some(v.clone()),
                    _ => return Err(ApiError::invalid_request("bad sort parameter")),
                }
            }
            _ => {}
        }
    }
    for (_, (field, direction)) in sorts {
        p.sort.push(sort_spec(field, direction)?);
    }
    p.cell_format_string = cell_format_is_string(cell_format.as_deref(), tz, locale)?;
    Ok(p)
}

fn sort_spec(field: Option<String>, direction: Option<String>) -> Result<SortSpec, ApiError> {
    let field = field.ok_or_else(|| ApiError::invalid_request("sort needs a field"))?;
    let desc = match direction.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(d) => {
            return Err(ApiError::invalid_request(format!(
                "sort direction must be asc or desc, got {d:?}"
            )))
        }
    };
    Ok(SortSpec { field, desc })
}

fn cell_format_is_string(
    cell_format: Option<&str>,
    tz: bool,
    locale: bool,
) -> Result<bool, ApiError> {
    match cell_format {
        None | Some("json") => Ok(false),
        Some("string") if tz && locale => Ok(true),
        Some("string") => {
            Err(ApiError::invalid_request("cellFormat string requires timeZone and userLocale"))
        }
        Some(other) => Err(ApiError::invalid_request(format!("unknown cellFormat {other:?}"))),
    }
}

/// List parameters from a POST listRecords body (timeZone/userLocale may stay in the query).
pub fn list_params_from_body(
    body: &Value,
    query: &[(String, String)],
) -> Result<ListParams, ApiError> {
    let obj =
        body.as_object().ok_or_else(|| ApiError::invalid_request("body must be an object"))?;
    let mut p = ListParams::default();
    let str_of = |v: &Value, name: &str| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::invalid_request(format!("{name} must be a string")))
    };
    let num_of = |v: &Value, name: &str| {
        v.as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| ApiError::invalid_request(format!("{name} must be a number")))
    };
    let (mut tz, mut locale) =
        (query.iter().any(|(k, _)| k == "timeZone"), query.iter().any(|(k, _)| k == "userLocale"));
    let mut cell_format = None;
    for (k, v) in obj {
        match k.as_str() {
            "pageSize" => p.page_size = Some(num_of(v, k)?),
            "maxRecords" => p.max_records = Some(num_of(v, k)?),
            "offset" => p.offset = Some(str_of(v, k)?),
            "view" => p.view = Some(str_of(v, k)?),
            "filterByFormula" => p.filter = Some(str_of(v, k)?),
            "fields" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| ApiError::invalid_request("fields must be an array"))?;
                p.fields =
                    Some(list.iter().map(|f| str_of(f, "fields[]")).collect::<Result<_, _>>()?);
            }
            "sort" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| ApiError::invalid_request("sort must be an array"))?;
                for s in list {
                    let field = s.get("field").and_then(Value::as_str).map(str::to_owned);
                    let direction = s.get("direction").and_then(Value::as_str).map(str::to_owned);
                    p.sort.push(sort_spec(field, direction)?);
                }
            }
            "returnFieldsByFieldId" => p.by_field_id = v.as_bool().unwrap_or(false),
            "recordMetadata" => {
                p.comment_count =
                    v.as_array().is_some_and(|a| a.iter().any(|x| x == "commentCount"))
            }
            "cellFormat" => cell_format = v.as_str().map(str::to_owned),
            "timeZone" => tz = true,
            "userLocale" => locale = true,
            _ => {}
        }
    }
    p.cell_format_string = cell_format_is_string(cell_format.as_deref(), tz, locale)?;
    Ok(p)
}
