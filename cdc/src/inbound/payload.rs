//! Webhook payloads into a plan: what to apply straight from the payload (every mapped field
//! type, its V2 cell turned into the V1 value), what to re-read through the records API (a
//! field whose type in the base is not the mapped one, or a cell in a shape its type does not
//! have), what to delete, and what to park.

use super::{apply::Parked, apply::Upsert, values::from_payload};
use crate::airtable::meta::BaseMeta;
use chrono::{DateTime, Utc};
use schema::mapping::Mapping;
use schema::mapping::TableId;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};

/// The base as the Meta API describes it, tied to the mapping.
#[derive(Debug, Default, Clone)]
pub struct BaseSchema {
    /// table id -> table
    tables: HashMap<String, TableInfo>,
}

#[derive(Debug, Clone)]
struct TableInfo {
    mapped: Option<TableId>,
    /// field id -> (name, type)
    fields: HashMap<String, (String, String)>,
}

impl BaseSchema {
    pub fn from_meta(meta: &BaseMeta, mapping: &Mapping) -> Self {
        let tables = meta
            .tables
            .iter()
            .map(|t| {
                let mapped =
                    mapping.airtable_table_id(&t.name).or_else(|| mapping.airtable_table_id(&t.id));
                let fields = t
                    .fields
                    .iter()
                    .map(|f| (f.id.clone(), (f.name.clone(), f.kind.clone())))
                    .collect();
                (t.id.clone(), TableInfo { mapped, fields })
            })
            .collect();
        Self { tables }
    }

    /// Field ids of the Airtable-owned fields of the mapped tables `wanted` keeps: a webhook
    /// watches these, so outbound writes (Postgres-owned fields) raise no update payloads.
    pub fn inbound_field_ids(
        &self,
        mapping: &Mapping,
        wanted: impl Fn(TableId) -> bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for info in self.tables.values() {
            let Some(ti) = info.mapped.filter(|t| wanted(*t)) else { continue };
            for c in mapping.tables[ti].inbound() {
                if let Some((id, _)) = info.fields.iter().find(|(_, (n, _))| *n == c.field.field) {
                    out.push(id.clone());
                }
            }
        }
        out.sort();
        out
    }

    /// The Airtable table id of mapped table `table`.
    pub fn table_id(&self, table: TableId) -> Option<&str> {
        self.tables.iter().find(|(_, t)| t.mapped == Some(table)).map(|(id, _)| id.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// What one page of payloads asks for.
#[derive(Debug, Default)]
pub struct Plan {
    /// Straight from the payloads, in order (a record may appear more than once).
    pub upserts: Vec<Upsert>,
    /// Records to re-read (table index -> record ids), with the newest change time.
    pub reread: HashMap<TableId, BTreeSet<String>>,
    pub reread_at: HashMap<(TableId, String), DateTime<Utc>>,
    pub deletes: Vec<(TableId, String)>,
    pub parked: Vec<Parked>,
    /// An error payload: the hook is broken and must be recreated.
    pub hook_error: Option<String>,
    /// A table or field id the schema does not know (refresh it and plan again).
    pub unknown_ids: bool,
}

fn parked(
    table: Option<String>,
    record: Option<String>,
    payload: Value,
    code: &str,
    message: String,
) -> Parked {
    Parked {
        table,
        record_id: record,
        operation: "payload",
        payload,
        code: code.to_owned(),
        message,
    }
}

/// Plans `payloads` for the mapped tables `wanted` keeps (another hook covers the rest).
/// `strict`: unknown ids are parked (after a schema refresh); otherwise they only set
/// `unknown_ids`.
pub fn plan(
    payloads: &[Value],
    schema: &BaseSchema,
    mapping: &Mapping,
    wanted: &dyn Fn(TableId) -> bool,
    strict: bool,
) -> Plan {
    let mut plan = Plan::default();
    for payload in payloads {
        if let Err(message) = plan_one(payload, schema, mapping, wanted, strict, &mut plan) {
            plan.parked.push(parked(None, None, payload.clone(), "MALFORMED_PAYLOAD", message));
        }
    }
    // A record re-read or deleted needs no direct apply.
    plan.upserts.retain(|u| {
        !plan.reread.get(&u.table).is_some_and(|s| s.contains(&u.record_id))
            && !plan.deletes.iter().any(|(t, r)| *t == u.table && *r == u.record_id)
    });
    for (t, r) in &plan.deletes {
        if let Some(s) = plan.reread.get_mut(t) {
            s.remove(r);
        }
    }
    plan.upserts = coalesce(std::mem::take(&mut plan.upserts));
    plan
}

/// One upsert per record, as its latest state: an admin typing produces a payload per
/// keystroke, and applying each would write the row as many times. Later cells win; a
/// record created in the burst stays complete; the change time is the latest.
fn coalesce(upserts: Vec<Upsert>) -> Vec<Upsert> {
    let mut out: Vec<Upsert> = Vec::with_capacity(upserts.len());
    let mut at: HashMap<(TableId, String), usize> = HashMap::new();
    for u in upserts {
        match at.get(&(u.table, u.record_id.clone())) {
            Some(&i) => {
                let kept = &mut out[i];
                kept.fields.extend(u.fields);
                kept.complete |= u.complete;
                kept.changed_at = kept.changed_at.max(u.changed_at);
            }
            None => {
                at.insert((u.table, u.record_id.clone()), out.len());
                out.push(u);
            }
        }
    }
    out
}

fn plan_one(
    payload: &Value,
    schema: &BaseSchema,
    mapping: &Mapping,
    wanted: &dyn Fn(TableId) -> bool,
    strict: bool,
    plan: &mut Plan,
) -> Result<(), String> {
    let obj = payload.as_object().ok_or("a payload must be an object")?;
    if obj.get("error").and_then(Value::as_bool) == Some(true) {
        plan.hook_error =
            Some(obj.get("code").and_then(Value::as_str).unwrap_or("UNKNOWN").to_owned());
        return Ok(());
    }
    let at = obj
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let tables = match obj.get("changedTablesById") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(t)) => t,
        Some(_) => return Err("changedTablesById must be an object".into()),
    };
    for (table_id, change) in tables {
        let Some(info) = schema.tables.get(table_id) else {
            if strict {
                plan.parked.push(parked(
                    None,
                    None,
                    json!({ "changedTablesById": { table_id: change } }),
                    "UNKNOWN_TABLE",
                    format!("table {table_id} is not in the base"),
                ));
            } else {
                plan.unknown_ids = true;
            }
            continue;
        };
        // Tables outside the mapping, and tables Airtable owns nothing of, are not ours.
        let Some(ti) = info.mapped.filter(|t| wanted(*t)) else { continue };
        let t = &mapping.tables[ti];
        if t.inbound().next().is_none() {
            continue;
        }
        let change = change.as_object().ok_or("a table change must be an object")?;
        let records = |key: &str| -> Result<Vec<(String, Value)>, String> {
            match change.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Object(o)) => {
                    Ok(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                }
                Some(_) => Err(format!("{key} must be an object")),
            }
        };
        for (kind, key, path) in [
            ("created", "createdRecordsById", "/cellValuesByFieldId"),
            ("changed", "changedRecordsById", "/current/cellValuesByFieldId"),
        ] {
            for (rid, entry) in records(key)? {
                let cells = match entry.pointer(path) {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(c)) => c.clone(),
                    Some(_) => return Err(format!("{rid}: cellValuesByFieldId must be an object")),
                };
                let mut fields = Map::new();
                let mut direct = true;
                let mut unknown = Vec::new();
                let mut owned = false;
                for (fid, v) in cells {
                    let Some((name, kind)) = info.fields.get(&fid) else {
                        unknown.push(fid);
                        continue;
                    };
                    if *name == mapping.merge_field {
                        // A record that carries its pg id (made by an import) keeps its row.
                        fields.insert(name.clone(), v);
                        continue;
                    }
                    let Some(c) = t.inbound().find(|c| c.field.field == *name) else { continue };
                    owned = true;
                    match from_payload(&c.field.kind, &v).filter(|_| c.field.kind == *kind.as_str())
                    {
                        Some(v1) => {
                            fields.insert(name.clone(), v1);
                        }
                        None => direct = false,
                    }
                }
                if !unknown.is_empty() {
                    if strict {
                        plan.parked.push(parked(
                            Some(t.table.name.to_owned()),
                            Some(rid.clone()),
                            json!({ "table": table_id, key: { &rid: entry } }),
                            "UNKNOWN_FIELD",
                            format!("fields {unknown:?} are not in table {table_id}"),
                        ));
                    } else {
                        plan.unknown_ids = true;
                    }
                    continue;
                }
                if kind == "changed" && !owned {
                    continue;
                }
                if direct {
                    plan.upserts.push(Upsert {
                        table: ti,
                        record_id: rid,
                        fields,
                        complete: kind == "created",
                        changed_at: at,
                    });
                } else {
                    if let Some(at) = at {
                        plan.reread_at.insert((ti, rid.clone()), at);
                    }
                    plan.reread.entry(ti).or_default().insert(rid);
                }
            }
        }
        match change.get("destroyedRecordIds") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ids)) => {
                for id in ids {
                    let id = id.as_str().ok_or("destroyedRecordIds must hold record ids")?;
                    plan.deletes.push((ti, id.to_owned()));
                }
            }
            Some(_) => return Err("destroyedRecordIds must be an array".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(mapping: &Mapping) -> BaseSchema {
        let meta = json!({ "tables": [
            { "id": "tblGOALS000000001", "name": "Goals", "fields": [
                { "id": "fldNAME0000000001", "name": "Name", "type": "singleLineText" },
                { "id": "fldORDER000000001", "name": "Order", "type": "number" } ] },
            { "id": "tblUSERS000000001", "name": "Users", "fields": [
                { "id": "fldEMAIL000000001", "name": "Email", "type": "email" },
                { "id": "fldROLE0000000001", "name": "Role", "type": "singleSelect" },
                { "id": "fldBONUS000000001", "name": "Bonus points", "type": "number" },
                { "id": "fldNAME0000000002", "name": "Name", "type": "formula" } ] },
            { "id": "tblOTHER000000001", "name": "Scratch", "fields": [] } ] });
        BaseSchema::from_meta(&BaseMeta::from_json(&meta), mapping)
    }

    #[test]
    fn payload_cells_apply_directly_a_type_the_mapping_does_not_expect_is_reread() {
        let m = Mapping::default_mapping().expect("mapping");
        let s = schema(&m);
        let payloads = vec![json!({
            "timestamp": "2026-11-21T10:00:00.000Z", "baseTransactionNumber": 1,
            "changedTablesById": {
                "tblGOALS000000001": {
                    "changedRecordsById": { "recGOAL0000000001": { "current": { "cellValuesByFieldId": { "fldORDER000000001": 4 } } } },
                    "destroyedRecordIds": ["recGOAL0000000002"] },
                "tblUSERS000000001": {
                    "createdRecordsById": {
                        "recUSER0000000001": { "cellValuesByFieldId": {
                            "fldEMAIL000000001": "a@b.nl", "fldROLE0000000001": { "id": "selX", "name": "coach", "color": "blue" } } },
                        "recUSER0000000003": { "cellValuesByFieldId": {
                            "fldEMAIL000000001": "c@d.nl", "fldNAME0000000002": "computed" } } },
                    "changedRecordsById": { "recUSER0000000002": { "current": { "cellValuesByFieldId": { "fldBONUS000000001": 3 } } } } },
                "tblOTHER000000001": { "createdRecordsById": { "recX": {} } } } })];
        let p = plan(&payloads, &s, &m, &|_| true, true);
        let users = m.table_id("users").expect("users");
        let direct: Vec<(&str, &Map<String, Value>)> =
            p.upserts.iter().map(|u| (u.record_id.as_str(), &u.fields)).collect();
        assert_eq!(direct.len(), 2, "{direct:?}");
        assert_eq!(direct[0].1["Order"], json!(4));
        assert!(!p.upserts[0].complete);
        assert!(p.upserts[0].changed_at.is_some());
        assert_eq!(direct[1].0, "recUSER0000000001");
        assert_eq!(direct[1].1["Role"], json!("coach"), "the option's name, as V1 has it");
        assert!(p.upserts[1].complete);
        // Bonus points are Postgres-owned: that change is not ours.
        assert_eq!(p.reread[&users].iter().collect::<Vec<_>>(), vec!["recUSER0000000003"]);
        assert_eq!(p.deletes.len(), 1);
        assert!(p.parked.is_empty());
    }

    #[test]
    fn unknown_ids_and_malformed_payloads_are_parked_the_rest_planned() {
        let m = Mapping::default_mapping().expect("mapping");
        let s = schema(&m);
        let payloads = vec![
            json!("not an object"),
            json!({ "changedTablesById": { "tblNOPE000000001": {} } }),
            json!({ "changedTablesById": { "tblGOALS000000001": { "changedRecordsById": {
                "recGOAL0000000001": { "current": { "cellValuesByFieldId": { "fldNOPE0000000001": 1 } } },
                "recGOAL0000000003": { "current": { "cellValuesByFieldId": { "fldNAME0000000001": "x" } } } } } } }),
            json!({ "error": true, "code": "INVALID_FILTERS" }),
        ];
        let lenient = plan(&payloads, &s, &m, &|_| true, false);
        assert!(lenient.unknown_ids);
        let p = plan(&payloads, &s, &m, &|_| true, true);
        let codes: Vec<&str> = p.parked.iter().map(|x| x.code.as_str()).collect();
        assert_eq!(codes, vec!["MALFORMED_PAYLOAD", "UNKNOWN_TABLE", "UNKNOWN_FIELD"]);
        assert_eq!(p.upserts.len(), 1);
        assert_eq!(p.hook_error.as_deref(), Some("INVALID_FILTERS"));
    }
}
