use crate::support::*;
use serde_json::json;

fn upsert(records: serde_json::Value, merge: serde_json::Value) -> serde_json::Value {
    json!({ "performUpsert": { "fieldsToMergeOn": merge }, "records": records })
}

#[tokio::test]
async fn upsert_creates_then_updates_by_merge_field_and_reports_which() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let path = format!("{BASE}/Users");
    let (s, r) = api.patch(&path, upsert(json!([{ "fields": { "pg_id": "pg:1", "Name": "A", "Age": 1 } }, { "fields": { "pg_id": "pg:2", "Name": "B" } }]), json!(["pg_id"]))).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["createdRecords"].as_array().expect("created").len(), 2);
    assert_eq!(r["updatedRecords"], json!([]));
    let first = r["records"][0]["id"].clone();

    // Replaying the same upsert changes nothing and duplicates nothing.
    let (_, r) = api
        .patch(
            &path,
            upsert(
                json!([{ "fields": { "pg_id": "pg:1", "Age": 5 } }]),
                json!(["fldUPgId000000001"]),
            ),
        )
        .await;
    assert_eq!(r["createdRecords"], json!([]));
    assert_eq!(r["updatedRecords"], json!([first]));
    assert_eq!(r["records"][0]["fields"]["Name"], "A", "PATCH upsert merges");
    assert_eq!(r["records"][0]["fields"]["Age"], 5);
    assert_eq!(e.admin().records(BASE, "Users").expect("records").len(), 2);

    // PUT upsert clears what it does not send; a record with an id ignores merge fields.
    let (_, r) = api
        .put(
            &path,
            upsert(json!([{ "fields": { "pg_id": "pg:1", "Name": "A2" } }]), json!(["pg_id"])),
        )
        .await;
    assert!(r["records"][0]["fields"].get("Age").is_none());
    let (_, r) = api
        .patch(
            &path,
            upsert(json!([{ "id": first, "fields": { "Name": "by id" } }]), json!(["pg_id"])),
        )
        .await;
    assert_eq!(r["updatedRecords"], json!([first]));

    // The same new key twice in one request makes one record.
    let (_, r) = api.patch(&path, upsert(json!([{ "fields": { "pg_id": "pg:9", "Name": "x" } }, { "fields": { "pg_id": "pg:9", "Age": 3 } }]), json!(["pg_id"]))).await;
    assert_eq!(r["createdRecords"].as_array().expect("created").len(), 1);
    assert_eq!(r["records"][0]["id"], r["records"][1]["id"]);
}

#[tokio::test]
async fn upsert_rejections_change_nothing() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let path = format!("{BASE}/Users");
    api.create_users(vec![
        json!({ "pg_id": "dup", "Name": "1" }),
        json!({ "pg_id": "dup", "Name": "2" }),
    ])
    .await;

    let (s, b) = api.patch(&path, upsert(json!([{ "fields": { "pg_id": "new", "Name": "n" } }, { "fields": { "pg_id": "dup", "Name": "x" } }]), json!(["pg_id"]))).await;
    assert_eq!(s, 422, "more than one match fails the request: {b}");
    let (s, _) = api
        .patch(&path, upsert(json!([{ "fields": { "Name": "no key" } }]), json!(["pg_id"])))
        .await;
    assert_eq!(s, 422, "a record without id must carry every merge field");
    let (s, _) = api
        .patch(
            &path,
            upsert(
                json!([{ "fields": { "pg_id": "k" } }]),
                json!(["pg_id", "Name", "Email", "Age"]),
            ),
        )
        .await;
    assert_eq!(s, 422, "at most 3 merge fields");
    let (s, _) = api.patch(&path, upsert(json!([{ "fields": { "pg_id": "k" } }]), json!([]))).await;
    assert_eq!(s, 422, "at least 1 merge field");
    let (s, b) =
        api.patch(&path, upsert(json!([{ "fields": { "pg_id": "k" } }]), json!(["Nope"]))).await;
    assert_eq!((s, error_type(&b)), (422, "UNKNOWN_FIELD_NAME"));
    let (s, _) = api
        .patch(&path, upsert(json!([{ "fields": { "Active": true } }]), json!(["Active"])))
        .await;
    assert_eq!(s, 422, "checkbox is not an upsert-eligible type");
    let (s, b) = api
        .patch(
            &path,
            upsert(json!([{ "id": "recMISSING0000001", "fields": {} }]), json!(["pg_id"])),
        )
        .await;
    assert_eq!((s, error_type(&b)), (422, "ROW_DOES_NOT_EXIST"));
    let records = e.admin().records(BASE, "Users").expect("records");
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r["fields"]["Name"] != "x"));
}

#[tokio::test]
async fn the_merge_index_follows_updates_and_deletes() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let path = format!("{BASE}/Users");
    let (_, r) =
        api.patch(&path, upsert(json!([{ "fields": { "pg_id": "a" } }]), json!(["pg_id"]))).await;
    let id = r["records"][0]["id"].as_str().expect("id").to_owned();
    api.patch(&format!("{path}/{id}"), json!({ "fields": { "pg_id": "b" } })).await;
    let (_, r) = api
        .patch(
            &path,
            upsert(json!([{ "fields": { "pg_id": "b", "Name": "found" } }]), json!(["pg_id"])),
        )
        .await;
    assert_eq!(r["updatedRecords"], json!([id]));
    let (_, r) =
        api.patch(&path, upsert(json!([{ "fields": { "pg_id": "a" } }]), json!(["pg_id"]))).await;
    assert_eq!(r["createdRecords"].as_array().expect("c").len(), 1, "old key no longer matches");
    api.delete(&format!("{path}/{id}")).await;
    let (_, r) =
        api.patch(&path, upsert(json!([{ "fields": { "pg_id": "b" } }]), json!(["pg_id"]))).await;
    assert_eq!(
        r["createdRecords"].as_array().expect("c").len(),
        1,
        "deleted record no longer matches"
    );
}
