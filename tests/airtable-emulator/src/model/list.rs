//! List records: filter, sort, fields, and offset pagination bound to a snapshot of the
//! ordered result (later pages show current values; deleted records drop out).

use super::{Base, World};
use crate::{error::ApiError, formula, ids};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::{cmp::Ordering, time::Duration};

#[derive(Debug, Clone)]
pub struct SortSpec {
    pub field: String,
    pub desc: bool,
}

/// List parameters, from the query string (GET) or the JSON body (POST listRecords).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub page_size: Option<usize>,
    pub max_records: Option<usize>,
    pub offset: Option<String>,
    pub view: Option<String>,
    pub sort: Vec<SortSpec>,
    pub filter: Option<String>,
    pub fields: Option<Vec<String>>,
    pub by_field_id: bool,
    pub comment_count: bool,
    pub cell_format_string: bool,
}

#[derive(Debug)]
pub struct Iterator {
    base_id: String,
    table_id: String,
    ids: Vec<String>,
    position: usize,
    last_used: DateTime<Utc>,
}

pub struct ListedPage {
    pub records: Vec<Value>,
    pub offset: Option<String>,
}

impl World {
    /// One page of records; opens or continues an iterator.
    pub fn list(
        &mut self,
        base_id: &str,
        table: &str,
        p: &ListParams,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<ListedPage, ApiError> {
        let inferred = self.inferred;
        let page_size = p.page_size.unwrap_or(100);
        if page_size == 0 || page_size > 100 {
            return Err(ApiError::invalid_request("pageSize must be between 1 and 100"));
        }
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self.iterators.retain(|_, it| now - it.last_used < ttl);
        let base = self.base_mut(base_id)?;
        let ti = base.table_index(table, inferred)?;
        let table_id = base.tables[ti].id.clone();
        let (iterator_id, mut iterator) = match &p.offset {
            Some(offset) => {
                let itr = offset.split('/').next().unwrap_or_default().to_owned();
                let it = self.iterators.remove(&itr).ok_or_else(|| {
                    ApiError::unprocessable(
                        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                        "The list records iterator is not available.",
                    )
                })?;
                if it.base_id != base_id || it.table_id != table_id {
                    return Err(ApiError::unprocessable(
                        "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                        "The list records iterator is not available.",
                    ));
                }
                (itr, it)
            }
            None => {
                let base = self.bases.get(base_id).ok_or_else(ApiError::model_not_found)?;
                let ids = snapshot(base, ti, p)?;
                (
                    ids::new_id("itr"),
                    Iterator {
                        base_id: base_id.to_owned(),
                        table_id: table_id.clone(),
                        ids,
                        position: 0,
                        last_used: now,
                    },
                )
            }
        };
        let base = self.bases.get(base_id).ok_or_else(ApiError::model_not_found)?;
        let table = &base.tables[ti];
        if let Some(fields) = &p.fields {
            for f in fields {
                if table.field(f).is_none() {
                    return Err(ApiError::unknown_field(f));
                }
            }
        }
        let mut records = Vec::with_capacity(page_size);
        while records.len() < page_size && iterator.position < iterator.ids.len() {
            let id = &iterator.ids[iterator.position];
            iterator.position += 1;
            if let Some(r) = table.records.get(id).filter(|_| !self.hidden.contains(id)) {
                let mut rendered = table.render(r, p.by_field_id, p.fields.as_deref());
                if p.comment_count {
                    rendered["commentCount"] = Value::from(0);
                }
                if p.cell_format_string {
                    if let Some(fields) = rendered.get_mut("fields").and_then(Value::as_object_mut)
                    {
                        for v in fields.values_mut() {
                            *v = Value::String(as_text(v));
                        }
                    }
                }
                records.push(rendered);
            }
        }
        let offset = if iterator.position < iterator.ids.len() {
            let next = format!("{iterator_id}/{}", iterator.ids[iterator.position]);
            iterator.last_used = now;
            self.iterators.insert(iterator_id, iterator);
            Some(next)
        } else {
            None
        };
        Ok(ListedPage { records, offset })
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(as_text).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o.get("name").map(as_text).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// The ordered record ids of a listing, fixed at its first request.
fn snapshot(base: &Base, ti: usize, p: &ListParams) -> Result<Vec<String>, ApiError> {
    let table = &base.tables[ti];
    if let Some(view) = &p.view {
        if !table.view_exists(view) {
            return Err(ApiError::unprocessable(
                "VIEW_NAME_NOT_FOUND",
                format!("Could not find view {view} in table {}", table.name),
            ));
        }
    }
    let filter = match p.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(text) => Some(formula::parse(text, table).map_err(|_| ApiError::invalid_formula())?),
        None => None,
    };
    let mut sort_fields = Vec::new();
    for s in &p.sort {
        let f = table.field(&s.field).ok_or_else(|| ApiError::unknown_field(&s.field))?;
        sort_fields.push((f.clone(), s.desc));
    }
    let mut rows: Vec<&super::table::Record> = table
        .records
        .values()
        .filter(|r| match &filter {
            Some(expr) => formula::eval(expr, table, r).map(|v| v.truthy()).unwrap_or(false),
            None => true,
        })
        .collect();
    if !sort_fields.is_empty() {
        rows.sort_by(|a, b| {
            for (f, desc) in &sort_fields {
                let o =
                    compare_cells(table.read_cell(a, f).as_ref(), table.read_cell(b, f).as_ref());
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        });
    }
    let mut ids: Vec<String> = rows.into_iter().map(|r| r.id.clone()).collect();
    if let Some(max) = p.max_records {
        ids.truncate(max);
    }
    Ok(ids)
}

/// Blanks first; numbers numerically; text case-insensitively.
fn compare_cells(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => as_text(x).to_lowercase().cmp(&as_text(y).to_lowercase()),
    }
}
