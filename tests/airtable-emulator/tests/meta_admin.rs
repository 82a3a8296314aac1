use crate::support::*;
use airtable_emulator::EmulatorConfig;
use serde_json::{json, Value};

#[tokio::test]
async fn the_meta_api_serves_the_schema_file() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (s, who) = api.get("meta/whoami").await;
    assert_eq!(s, 200);
    assert!(who["id"].as_str().expect("id").starts_with("usr"));
    let (_, bases) = api.get("meta/bases").await;
    assert_eq!(
        bases["bases"],
        json!([{ "id": BASE, "name": "Coach", "permissionLevel": "create" }])
    );
    let (_, tables) = api.get(&format!("meta/bases/{BASE}/tables")).await;
    let users = &tables["tables"][1];
    assert_eq!(
        (users["id"].clone(), users["name"].clone(), users["primaryFieldId"].clone()),
        (json!("tblUSERS000000001"), json!("Users"), json!("fldUName000000001"))
    );
    let company = users["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "Company")
        .cloned()
        .expect("company");
    assert_eq!(company["type"], "multipleRecordLinks");
    assert_eq!(company["options"]["linkedTableId"], "tblCOMPANIES00001");
    assert_eq!(users["views"][0]["type"], "grid");
    let (s, b) = api.get("meta/bases/appNOSUCHBASE0001/tables").await;
    assert_eq!((s, error_type(&b)), (403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"));
}

#[tokio::test]
async fn without_a_schema_tables_and_fields_are_inferred_from_use() {
    let e = start(EmulatorConfig::new(TOKEN).unlimited()).await;
    let api = Api::new(&e);
    let (s, r) = api
        .post(
            "appINFERRED000001/Things",
            json!({ "fields": { "Title": "x", "Count": 2, "Done": true, "Labels": ["a", "b"] } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (_, tables) = api.get("meta/bases/appINFERRED000001/tables").await;
    let types: Vec<(String, String)> = tables["tables"][0]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or("").to_owned(),
                f["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for (name, kind) in [
        ("Title", "singleLineText"),
        ("Count", "number"),
        ("Done", "checkbox"),
        ("Labels", "multipleSelects"),
    ] {
        assert!(types.contains(&(name.to_owned(), kind.to_owned())), "{types:?}");
    }
}

#[tokio::test]
async fn counters_report_requests_by_kind_and_status_and_the_largest_write() {
    let e = start(config()).await;
    let api = Api::new(&e);
    api.create_users((0..7).map(|i| json!({ "Name": format!("{i}") })).collect()).await;
    api.create_users(vec![json!({ "Name": "x" })]).await;
    api.get(&format!("{BASE}/Users")).await;
    api.post(&format!("{BASE}/Users"), json!({ "fields": { "Nope": 1 } })).await;
    let stats = e.admin().stats();
    assert_eq!(stats.requests.get("create 200"), Some(&2));
    assert_eq!(stats.requests.get("create 422"), Some(&1));
    assert_eq!(stats.requests.get("list 200"), Some(&1));
    assert_eq!(stats.max_records_per_write, 7);
    assert_eq!(stats.records_written, 8);
    assert_eq!(stats.count("create"), 3);
    assert_eq!(e.admin().request_log().len(), 4);
    e.admin().reset_stats();
    assert_eq!(e.admin().stats().total_requests, 0);
}

#[tokio::test]
async fn the_admin_surface_over_http_edits_reads_state_and_sets_faults() {
    let e = start(config()).await;
    let http = reqwest::Client::new();
    let admin = format!("{}/_admin", e.url());
    let r: Value = http
        .post(format!("{admin}/bases/{BASE}/tables/Users/records"))
        .json(&json!({ "records": [{ "fields": { "Name": "ui" } }] }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let id = r["records"][0]["id"].as_str().expect("id").to_owned();
    let r: Value = http
        .patch(format!("{admin}/bases/{BASE}/tables/Users/records/{id}"))
        .json(&json!({ "fields": { "Age": 9 } }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["fields"]["Age"], 9);
    let state: Value =
        http.get(format!("{admin}/state")).send().await.expect("send").json().await.expect("json");
    assert_eq!(state["bases"][0]["tables"][1]["records"][0]["fields"]["Name"], "ui");
    let s = http
        .put(format!("{admin}/faults"))
        .json(&json!({ "error_rate": 1.0 }))
        .send()
        .await
        .expect("send")
        .status();
    assert_eq!(s, 204);
    assert!(Api::new(&e).get(&format!("{BASE}/Users")).await.0 >= 500);
    http.put(format!("{admin}/faults")).json(&json!({})).send().await.expect("send");
    http.delete(format!("{admin}/bases/{BASE}/tables/Users/records/{id}"))
        .send()
        .await
        .expect("send");
    let stats: Value =
        http.get(format!("{admin}/stats")).send().await.expect("send").json().await.expect("json");
    assert_eq!(stats["total_requests"], 1);
    assert!(e.admin().records(BASE, "Users").expect("r").is_empty());
}
