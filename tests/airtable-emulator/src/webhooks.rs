//! Webhooks: specification filters, payloads in the V2 cell format, cursor listing,
//! expiry and retention, and notification pings signed with the webhook's MAC secret.

use crate::{
    clock::iso,
    error::ApiError,
    ids,
    model::{field::is_empty, Base, Changes},
};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::collections::VecDeque;

/// Webhooks, payloads and expiry all run on a 7-day clock.
pub const LIFETIME_DAYS: i64 = 7;
pub const MAX_PER_BASE: usize = 10;
pub const MAX_PAYLOADS_PER_PAGE: usize = 50;

#[derive(Debug, Clone)]
struct Filters {
    data_types: Vec<String>,
    scope: Option<String>,
    change_types: Option<Vec<String>>,
    from_sources: Option<Vec<String>>,
    watch_fields: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
struct Includes {
    /// None: nothing unchanged; Some(None): all fields; Some(Some(ids)): these fields.
    cell_values: Option<Option<Vec<String>>>,
    previous: bool,
}

#[derive(Debug, Clone)]
pub struct StoredPayload {
    pub number: u64,
    pub at: DateTime<Utc>,
    pub body: Value,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub mac_secret: Vec<u8>,
    pub notification_url: Option<String>,
    pub specification: Value,
    filters: Filters,
    includes: Includes,
    pub notifications_enabled: bool,
    pub expiration: DateTime<Utc>,
    pub payloads: VecDeque<StoredPayload>,
    pub next_cursor: u64,
    pub last_notification_result: Option<Value>,
    pub last_successful_notification: Option<DateTime<Utc>>,
    /// An error payload was generated: the hook never recovers.
    pub errored: bool,
}

fn string_list(v: Option<&Value>) -> Result<Option<Vec<String>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid_request("expected an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid_request("expected an array of strings")),
    }
}

impl Webhook {
    /// Validates a create request against the base (tables and fields by id).
    pub fn create(base: &Base, body: &Value, now: DateTime<Utc>) -> Result<Self, ApiError> {
        if base.webhooks.len() >= MAX_PER_BASE {
            return Err(ApiError::unprocessable(
                "TOO_MANY_WEBHOOKS",
                format!("A base can have at most {MAX_PER_BASE} webhooks"),
            ));
        }
        let notification_url = match body.get("notificationUrl") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.clone())
            }
            Some(_) => {
                return Err(ApiError::invalid_request("notificationUrl must be an http(s) URL"))
            }
        };
        let spec = body
            .get("specification")
            .cloned()
            .ok_or_else(|| ApiError::invalid_request("specification is required"))?;
        let options = spec
            .get("options")
            .ok_or_else(|| ApiError::invalid_request("specification.options is required"))?;
        let filters_v = options.get("filters").ok_or_else(|| {
            ApiError::invalid_request("specification.options.filters is required")
        })?;
        let data_types = string_list(filters_v.get("dataTypes"))?
            .filter(|d| !d.is_empty())
            .ok_or_else(|| ApiError::invalid_request("filters.dataTypes is required"))?;
        if data_types
            .iter()
            .any(|d| !matches!(d.as_str(), "tableData" | "tableFields" | "tableMetadata"))
        {
            return Err(ApiError::invalid_request(
                "filters.dataTypes may contain tableData, tableFields, tableMetadata",
            ));
        }
        let scope = filters_v.get("recordChangeScope").and_then(Value::as_str).map(str::to_owned);
        if let Some(s) = &scope {
            let known =
                base.tables.iter().any(|t| t.id == *s || t.views.iter().any(|(v, _)| v == s));
            if !known {
                return Err(ApiError::invalid_request(format!(
                    "recordChangeScope {s} is not a table or view id in this base"
                )));
            }
        }
        let change_types = string_list(filters_v.get("changeTypes"))?;
        if change_types
            .as_ref()
            .is_some_and(|c| c.iter().any(|t| !matches!(t.as_str(), "add" | "remove" | "update")))
        {
            return Err(ApiError::invalid_request(
                "filters.changeTypes may contain add, remove, update",
            ));
        }
        let watch_fields = string_list(filters_v.get("watchDataInFieldIds"))?;
        if let Some(ws) = &watch_fields {
            for w in ws {
                if !base.tables.iter().any(|t| t.fields.iter().any(|f| f.id == *w)) {
                    return Err(ApiError::invalid_request(format!(
                        "watchDataInFieldIds: unknown field id {w}"
                    )));
                }
            }
        }
        let includes_v = options.get("includes");
        let cell_values = match includes_v.and_then(|i| i.get("includeCellValuesInFieldIds")) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "all" => Some(None),
            other => Some(string_list(other)?),
        };
        let previous = includes_v
            .and_then(|i| i.get("includePreviousCellValues"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let secret: [u8; 32] = rand::random();
        Ok(Self {
            id: ids::new_id("ach"),
            mac_secret: secret.to_vec(),
            notification_url,
            specification: spec.clone(),
            filters: Filters {
                data_types,
                scope,
                change_types,
                from_sources: string_list(filters_v.get("fromSources"))?,
                watch_fields,
            },
            includes: Includes { cell_values, previous },
            notifications_enabled: true,
            expiration: now + Duration::days(LIFETIME_DAYS),
            payloads: VecDeque::new(),
            next_cursor: 1,
            last_notification_result: None,
            last_successful_notification: None,
            errored: false,
        })
    }

    pub fn secret_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.mac_secret)
    }

    pub fn is_enabled(&self, now: DateTime<Utc>) -> bool {
        !self.errored && now < self.expiration
    }

    /// The list endpoint's description of this webhook.
    pub fn describe(&self, now: DateTime<Utc>) -> Value {
        json!({
            "id": self.id,
            "notificationUrl": self.notification_url,
            "areNotificationsEnabled": self.notifications_enabled,
            "isHookEnabled": self.is_enabled(now),
            "cursorForNextPayload": self.next_cursor,
            "expirationTime": iso(self.expiration),
            "lastSuccessfulNotificationTime": self.last_successful_notification.map(iso),
            "lastNotificationResult": self.last_notification_result,
            "specification": self.specification,
        })
    }

    fn wants_table(&self, base: &Base, table_id: &str) -> bool {
        match &self.filters.scope {
            None => true,
            Some(s) => {
                s == table_id
                    || base
                        .table_by_id(table_id)
                        .is_some_and(|t| t.views.iter().any(|(v, _)| v == s))
            }
        }
    }

    fn wants_change(&self, kind: &str) -> bool {
        self.filters.change_types.as_ref().is_none_or(|c| c.iter().any(|t| t == kind))
    }

    fn drop_expired(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::days(LIFETIME_DAYS);
        while self.payloads.front().is_some_and(|p| p.at < horizon) {
            self.payloads.pop_front();
        }
    }

    /// Appends the payload(s) one transaction produces for this hook, if it matches.
    /// Returns whether a ping is due.
    pub fn record_changes(
        &mut self,
        base: &Base,
        changes: &Changes,
        source: &str,
        txn: u64,
        now: DateTime<Utc>,
        split: Option<usize>,
    ) -> bool {
        self.drop_expired(now);
        if !self.is_enabled(now) || !self.filters.data_types.iter().any(|d| d == "tableData") {
            return false;
        }
        if self.filters.from_sources.as_ref().is_some_and(|s| !s.iter().any(|x| x == source)) {
            return false;
        }
        // (table id, record entry kind, record id, entry) in order, so large changes can split.
        let mut items: Vec<(String, &'static str, String, Value)> = Vec::new();
        for (table_id, tc) in &changes.tables {
            if tc.is_empty() || !self.wants_table(base, table_id) {
                continue;
            }
            let Some(table) = base.table_by_id(table_id) else { continue };
            let v2 = |fid: &str, value: Option<&Value>| {
                let field = table.fields.iter().find(|f| f.id == fid);
                match field {
                    Some(f) => table.v2_cell(
                        f,
                        value,
                        f.linked_table_id().and_then(|l| base.table_by_id(l)),
                    ),
                    None => Value::Null,
                }
            };
            if self.wants_change("add") {
                for rid in &tc.created {
                    let Some(r) = table.records.get(rid) else { continue };
                    let mut cells = Map::new();
                    for f in &table.fields {
                        if let Some(v) = table.read_cell(r, f) {
                            cells.insert(f.id.clone(), v2(&f.id, Some(&v)));
                        }
                    }
                    items.push((
                        table_id.clone(),
                        "created",
                        rid.clone(),
                        json!({ "createdTime": iso(r.created), "cellValuesByFieldId": cells }),
                    ));
                }
            }
            if self.wants_change("update") {
                for (rid, previous) in &tc.changed {
                    let Some(r) = table.records.get(rid) else { continue };
                    if let Some(watch) = &self.filters.watch_fields {
                        if !previous.keys().any(|f| watch.contains(f)) {
                            continue;
                        }
                    }
                    let mut current = Map::new();
                    let mut prev = Map::new();
                    for (fid, old) in previous {
                        current.insert(fid.clone(), v2(fid, r.cells.get(fid)));
                        prev.insert(fid.clone(), v2(fid, old.as_ref()));
                    }
                    let mut entry = json!({ "current": { "cellValuesByFieldId": current } });
                    if self.includes.previous {
                        entry["previous"] = json!({ "cellValuesByFieldId": prev });
                    }
                    if let Some(which) = &self.includes.cell_values {
                        let mut unchanged = Map::new();
                        for f in &table.fields {
                            let included = which.as_ref().is_none_or(|ids| ids.contains(&f.id));
                            if included && !previous.contains_key(&f.id) {
                                if let Some(v) = table.read_cell(r, f).filter(|v| !is_empty(v)) {
                                    unchanged.insert(f.id.clone(), v2(&f.id, Some(&v)));
                                }
                            }
                        }
                        entry["unchanged"] = json!({ "cellValuesByFieldId": unchanged });
                    }
                    items.push((table_id.clone(), "changed", rid.clone(), entry));
                }
            }
            if self.wants_change("remove") {
                for rid in &tc.destroyed {
                    items.push((table_id.clone(), "destroyed", rid.clone(), Value::Null));
                }
            }
        }
        if items.is_empty() {
            return false;
        }
        let chunk = split.unwrap_or(usize::MAX).max(1);
        for part in items.chunks(chunk) {
            let mut tables = Map::new();
            for (table_id, kind, rid, entry) in part {
                let t = tables.entry(table_id.clone()).or_insert_with(|| json!({}));
                match *kind {
                    "created" => {
                        t["createdRecordsById"][rid] = entry.clone();
                    }
                    "changed" => {
                        t["changedRecordsById"][rid] = entry.clone();
                    }
                    _ => {
                        if t.get("destroyedRecordIds").is_none() {
                            t["destroyedRecordIds"] = json!([]);
                        }
                        if let Some(a) = t["destroyedRecordIds"].as_array_mut() {
                            a.push(json!(rid));
                        }
                    }
                }
            }
            let body = json!({
                "timestamp": iso(now),
                "baseTransactionNumber": txn,
                "payloadFormat": "v0",
                "actionMetadata": {
                    "source": source,
                    "sourceMetadata": { "user": { "id": crate::model::table::EMULATOR_USER, "email": "emulator@example.com", "permissionLevel": "create" } }
                },
                "changedTablesById": tables,
            });
            self.payloads.push_back(StoredPayload { number: self.next_cursor, at: now, body });
            self.next_cursor += 1;
        }
        self.notification_url.is_some() && self.notifications_enabled
    }

    /// A payload exactly as given (admin); returns whether a ping is due.
    pub fn push_raw(&mut self, body: Value, now: DateTime<Utc>) -> bool {
        if !self.is_enabled(now) {
            return false;
        }
        self.payloads.push_back(StoredPayload { number: self.next_cursor, at: now, body });
        self.next_cursor += 1;
        self.notification_url.is_some() && self.notifications_enabled
    }

    /// An error payload (a scoped table or watched field was deleted); the hook stops.
    pub fn record_error(&mut self, code: &str, txn: u64, now: DateTime<Utc>) -> bool {
        if !self.is_enabled(now) {
            return false;
        }
        let body = json!({
            "error": true, "code": code, "timestamp": iso(now), "baseTransactionNumber": txn,
            "payloadFormat": "v0", "actionMetadata": { "source": "client" },
        });
        self.payloads.push_back(StoredPayload { number: self.next_cursor, at: now, body });
        self.next_cursor += 1;
        self.errored = true;
        self.notification_url.is_some() && self.notifications_enabled
    }

    /// `GET …/payloads`: from `cursor` (default 1), at most `limit` (≤ 50). Listing extends
    /// an active hook's life.
    pub fn list_payloads(
        &mut self,
        cursor: Option<u64>,
        limit: Option<usize>,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let limit = limit.unwrap_or(MAX_PAYLOADS_PER_PAGE);
        if limit == 0 || limit > MAX_PAYLOADS_PER_PAGE {
            return Err(ApiError::invalid_request(format!(
                "limit must be between 1 and {MAX_PAYLOADS_PER_PAGE}"
            )));
        }
        self.drop_expired(now);
        if self.is_enabled(now) {
            self.expiration = now + Duration::days(LIFETIME_DAYS);
        }
        let cursor = cursor.unwrap_or(1).max(1);
        let page: Vec<&StoredPayload> =
            self.payloads.iter().filter(|p| p.number >= cursor).take(limit).collect();
        let next = page.last().map_or(cursor, |p| p.number + 1);
        let more = self.payloads.iter().any(|p| p.number >= next);
        Ok(json!({
            "cursor": next,
            "mightHaveMore": more,
            "payloads": page.iter().map(|p| p.body.clone()).collect::<Vec<_>>(),
        }))
    }

    /// `X-Airtable-Content-MAC` for a notification body.
    pub fn mac_header(&self, body: &[u8]) -> String {
        mac_header(&self.mac_secret, body)
    }
}

/// `hmac-sha256=<lowercase hex of HMAC-SHA256(secret, raw body)>`.
pub fn mac_header(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("hmac-sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_matches_the_documented_test_vector() {
        let secret = base64::engine::general_purpose::STANDARD
            .decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .expect("base64");
        let body = br#"{"base":{"id":"appTESTBASE000001"},"webhook":{"id":"achTESTHOOK000001"},"timestamp":"2024-01-01T00:00:00.000Z"}"#;
        assert_eq!(
            mac_header(&secret, body),
            "hmac-sha256=526f7c10023ffcca6ea4cb12269642614464d920e24d9260935e3365c35d9e55"
        );
    }
}
