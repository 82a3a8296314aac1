//! The records API.

use super::{query, Handled, Request};
use crate::{
    error::ApiError,
    lock,
    model::{RecordInput, UpsertOptions},
    Shared,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn list(shared: &Arc<Shared>, base: &str, table: &str, post: bool, req: &Request) -> Handled {
    let pairs = req.query();
    let params = if post {
        query::list_params_from_body(&req.json()?, &pairs)?
    } else {
        query::list_params_from_query(&pairs)?
    };
    let page = lock(&shared.world).list(
        base,
        table,
        &params,
        shared.config.iterator_ttl,
        shared.clock.now(),
    )?;
    let mut body = json!({ "records": page.records });
    if let Some(offset) = page.offset {
        body["offset"] = json!(offset);
    }
    Ok((body, 0))
}

pub fn get(shared: &Arc<Shared>, base: &str, table: &str, record: &str, req: &Request) -> Handled {
    let by_id =
        req.query().iter().any(|(k, v)| k == "returnFieldsByFieldId" && (v == "true" || v == "1"));
    shared.read(base, table, |b, ti| {
        // Airtable falls back to a base-wide lookup for a record of another table.
        let found = std::iter::once(&b.tables[ti])
            .chain(b.tables.iter())
            .find_map(|t| t.records.get(record).map(|r| t.render(r, by_id, None)));
        found.map(|r| (r, 0)).ok_or_else(ApiError::record_not_found)
    })
}

/// Options common to write bodies.
struct WriteBody {
    records: Vec<RecordInput>,
    typecast: bool,
    by_id: bool,
    merge_on: Option<Vec<String>>,
    /// The single-record form (`{"fields":…}`) answers with a bare record.
    single: bool,
}

fn parse_fields(v: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    match v {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::invalid_records("fields must be an object")),
    }
}

fn write_body(req: &Request, allow_single: bool) -> Result<WriteBody, ApiError> {
    let body = req.json()?;
    let obj =
        body.as_object().ok_or_else(|| ApiError::invalid_request("body must be an object"))?;
    let typecast = obj.get("typecast").and_then(Value::as_bool).unwrap_or(false);
    let by_id = obj.get("returnFieldsByFieldId").and_then(Value::as_bool).unwrap_or(false);
    let merge_on = match obj.get("performUpsert") {
        None | Some(Value::Null) => None,
        Some(u) => Some(
            u.get("fieldsToMergeOn")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    ApiError::invalid_request("performUpsert.fieldsToMergeOn must be an array")
                })?
                .iter()
                .map(|f| {
                    f.as_str().map(str::to_owned).ok_or_else(|| {
                        ApiError::invalid_request("fieldsToMergeOn must name fields")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let (records, single) = match obj.get("records") {
        Some(Value::Array(list)) => {
            let recs = list
                .iter()
                .map(|r| {
                    let r = r
                        .as_object()
                        .ok_or_else(|| ApiError::invalid_records("records must be objects"))?;
                    let id = match r.get("id") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(_) => {
                            return Err(ApiError::invalid_records("record id must be a string"))
                        }
                    };
                    Ok(RecordInput { id, fields: parse_fields(r.get("fields"))? })
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            (recs, false)
        }
        Some(_) => {
            return Err(ApiError::invalid_records(
                "\"records\" must be an array of up to 10 records",
            ))
        }
        None if allow_single && obj.contains_key("fields") => {
            (vec![RecordInput { id: None, fields: parse_fields(obj.get("fields"))? }], true)
        }
        None => {
            return Err(ApiError::invalid_records(
                "Could not find field \"records\" in the request body",
            ))
        }
    };
    Ok(WriteBody { records, typecast, by_id, merge_on, single })
}

pub fn create(shared: &Arc<Shared>, base: &str, table: &str, req: &Request) -> Handled {
    let w = write_body(req, true)?;
    let n = w.records.len();
    if w.records.iter().any(|r| r.id.is_some()) {
        return Err(ApiError::invalid_records("Records to create must not have an id"));
    }
    shared.write(base, table, "publicApi", |b, ti, now| {
        let (ids, changes) = b.create(ti, &w.records, w.typecast, now)?;
        let mut rendered = b.render_all(ti, &ids, w.by_id);
        let body = if w.single {
            rendered.pop().unwrap_or(Value::Null)
        } else {
            json!({ "records": rendered })
        };
        Ok(((body, n), changes))
    })
}

pub fn update_many(
    shared: &Arc<Shared>,
    base: &str,
    table: &str,
    replace: bool,
    req: &Request,
) -> Handled {
    let w = write_body(req, false)?;
    let n = w.records.len();
    let multiple_match = shared.config.multiple_match_error;
    shared.write(base, table, "publicApi", |b, ti, now| match &w.merge_on {
        Some(merge_on) => {
            let options = UpsertOptions {
                merge_on,
                replace,
                typecast: w.typecast,
                multiple_match_error: multiple_match,
            };
            let (outcome, changes) = b.upsert(ti, &w.records, &options, now)?;
            let body = json!({
                "records": b.render_all(ti, &outcome.records, w.by_id),
                "createdRecords": outcome.created,
                "updatedRecords": outcome.updated,
            });
            Ok(((body, n), changes))
        }
        None => {
            let (ids, changes) = b.update(ti, &w.records, replace, w.typecast, now)?;
            Ok(((json!({ "records": b.render_all(ti, &ids, w.by_id) }), n), changes))
        }
    })
}

pub fn update_one(
    shared: &Arc<Shared>,
    base: &str,
    table: &str,
    record: &str,
    replace: bool,
    req: &Request,
) -> Handled {
    let body = req.json()?;
    let obj =
        body.as_object().ok_or_else(|| ApiError::invalid_request("body must be an object"))?;
    let input =
        RecordInput { id: Some(record.to_owned()), fields: parse_fields(obj.get("fields"))? };
    let typecast = obj.get("typecast").and_then(Value::as_bool).unwrap_or(false);
    let by_id = obj.get("returnFieldsByFieldId").and_then(Value::as_bool).unwrap_or(false);
    shared.write(base, table, "publicApi", |b, ti, now| {
        if !b.tables[ti].records.contains_key(record) {
            return Err(ApiError::record_not_found());
        }
        let (ids, changes) = b.update(ti, std::slice::from_ref(&input), replace, typecast, now)?;
        Ok(((b.render_all(ti, &ids, by_id).pop().unwrap_or(Value::Null), 1), changes))
    })
}

pub fn delete_many(shared: &Arc<Shared>, base: &str, table: &str, req: &Request) -> Handled {
    let pairs = req.query();
    if pairs.iter().any(|(k, _)| k == "records") {
        return Err(ApiError::invalid_records(
            "\"records\" must be an array of up to 10 record IDs.",
        ));
    }
    let ids: Vec<String> =
        pairs.into_iter().filter(|(k, _)| k == "records[]").map(|(_, v)| v).collect();
    let n = ids.len();
    shared.write(base, table, "publicApi", |b, ti, now| {
        let changes = b.delete(ti, &ids, now)?;
        let body = json!({ "records": ids.iter().map(|id| json!({ "id": id, "deleted": true })).collect::<Vec<_>>() });
        Ok(((body, n), changes))
    })
}

pub fn delete_one(shared: &Arc<Shared>, base: &str, table: &str, record: &str) -> Handled {
    shared.write(base, table, "publicApi", |b, ti, now| {
        if !b.tables[ti].records.contains_key(record) {
            return Err(ApiError::record_not_found());
        }
        let changes = b.delete(ti, &[record.to_owned()], now)?;
        Ok(((json!({ "id": record, "deleted": true }), 1), changes))
    })
}
