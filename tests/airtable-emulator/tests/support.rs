use airtable_emulator::{Emulator, EmulatorConfig, SchemaFile};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "patTESTTOKEN.secret";
pub const BASE: &str = "appTESTBASE000001";

/// A base with the field types the daemon uses, links with an inverse, computed fields.
pub fn schema() -> SchemaFile {
    serde_json::from_value(json!({ "bases": [{ "id": BASE, "name": "Coach", "tables": [
        { "id": "tblCOMPANIES00001", "name": "Companies", "fields": [
            { "id": "fldCoName00000001", "name": "Name", "type": "singleLineText" },
            { "id": "fldCoUsers0000001", "name": "Users", "type": "multipleRecordLinks",
              "options": { "linkedTableId": "tblUSERS000000001", "inverseLinkFieldId": "fldUCompany000001" } }
        ]},
        { "id": "tblUSERS000000001", "name": "Users", "fields": [
            { "id": "fldUName000000001", "name": "Name", "type": "singleLineText" },
            { "id": "fldUEmail00000001", "name": "Email", "type": "email" },
            { "id": "fldUPgId000000001", "name": "pg_id", "type": "singleLineText" },
            { "id": "fldUAge0000000001", "name": "Age", "type": "number", "options": { "precision": 0 } },
            { "id": "fldUActive0000001", "name": "Active", "type": "checkbox" },
            { "id": "fldUStatus0000001", "name": "Status", "type": "singleSelect",
              "options": { "choices": [{ "id": "selActive00000001", "name": "active", "color": "greenLight2" }, { "id": "selDisabled000001", "name": "disabled", "color": "redLight2" }] } },
            { "id": "fldUTags000000001", "name": "Tags", "type": "multipleSelects", "options": { "choices": [{ "id": "selTagA0000000001", "name": "a" }] } },
            { "id": "fldUJoined0000001", "name": "Joined", "type": "date" },
            { "id": "fldUSeen000000001", "name": "Seen", "type": "dateTime" },
            { "id": "fldUCompany000001", "name": "Company", "type": "multipleRecordLinks",
              "options": { "linkedTableId": "tblCOMPANIES00001", "inverseLinkFieldId": "fldCoUsers0000001" } },
            { "id": "fldUAuto000000001", "name": "Auto", "type": "autoNumber" },
            { "id": "fldUModified00001", "name": "Modified", "type": "lastModifiedTime" },
            { "id": "fldUCreated000001", "name": "Created", "type": "createdTime" },
            { "id": "fldUCalc000000001", "name": "Calc", "type": "formula", "options": { "formula": "{Age} * 2" } }
        ]}
    ]}]}))
    .expect("schema")
}

pub fn config() -> EmulatorConfig {
    let mut c = EmulatorConfig::new(TOKEN).unlimited();
    c.schema = Some(schema());
    c
}

pub async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config, "127.0.0.1:0".parse().expect("addr")).await.expect("emulator starts")
}

/// A plain HTTP client of the emulator.
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Api {
    pub fn new(e: &Emulator) -> Self {
        Self { http: reqwest::Client::new(), url: e.url(), token: TOKEN.into() }
    }

    /// `path` is relative to /v0/. Returns status and JSON body (Null when not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req =
            self.http.request(method, format!("{}/v0/{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates users (≤ 10) and returns their ids.
    pub async fn create_users(&self, fields: Vec<Value>) -> Vec<String> {
        let records: Vec<Value> = fields.into_iter().map(|f| json!({ "fields": f })).collect();
        let (s, body) = self.post(&format!("{BASE}/Users"), json!({ "records": records })).await;
        assert_eq!(s, 200, "{body}");
        body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect()
    }
}

pub fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or("")
}

/// Waits for `check` to hold, polling until `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
