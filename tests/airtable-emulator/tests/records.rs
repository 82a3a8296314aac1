use crate::support::*;
use serde_json::{json, Value};

#[tokio::test]
async fn authentication_routes_and_unknown_models_answer_as_airtable() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let mut bad = Api::new(&e);
    bad.token = "wrong".into();
    let (s, b) = bad.get(&format!("{BASE}/Users")).await;
    assert_eq!((s, error_type(&b)), (401, "AUTHENTICATION_REQUIRED"));
    let r = api.http.get(format!("{}/v0/{BASE}/Users", e.url())).send().await.expect("send");
    assert_eq!(r.status(), 401);

    let (s, b) = api.get("nope/at/all/here/x").await;
    assert_eq!((s, b), (404, json!({ "error": "NOT_FOUND" })));
    let (s, b) = api.get("appNOSUCHBASE0001/Users").await;
    assert_eq!((s, error_type(&b)), (403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"));
    let (s, b) = api.get(&format!("{BASE}/NoSuchTable")).await;
    assert_eq!((s, error_type(&b)), (403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"));

    let r = api
        .http
        .post(format!("{}/v0/{BASE}/Users", e.url()))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let long = "x".repeat(16_000);
    let (s, _) = api.get(&format!("{BASE}/Users?filterByFormula={long}")).await;
    assert_eq!(s, 414);
}

#[tokio::test]
async fn create_single_and_batch_with_ids_times_and_empty_values_omitted() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (s, one) = api.post(&format!("{BASE}/Users"), json!({ "fields": { "Name": "Ann", "Email": "", "Active": false, "Tags": [], "Age": null } })).await;
    assert_eq!(s, 200, "{one}");
    let id = one["id"].as_str().expect("id");
    assert!(id.starts_with("rec") && id.len() == 17);
    let created = one["createdTime"].as_str().expect("createdTime");
    assert!(created.ends_with(".000Z"), "{created}");
    let fields = one["fields"].as_object().expect("fields");
    for empty in ["Email", "Active", "Tags", "Age"] {
        assert!(!fields.contains_key(empty), "{empty} must be omitted: {one}");
    }
    assert_eq!(fields["Name"], "Ann");
    assert_eq!(fields["Auto"], 1);
    assert!(fields.contains_key("Created") && fields.contains_key("Modified"));

    let (s, batch) = api
        .post(&format!("{BASE}/Users/"), json!({ "records": [{ "fields": { "Name": "B", "Age": 4 } }, { "fields": { "Name": "C" } }], "returnFieldsByFieldId": true }))
        .await;
    assert_eq!(s, 200, "{batch}");
    let recs = batch["records"].as_array().expect("records");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["fields"]["fldUName000000001"], "B");
    assert_eq!(recs[0]["fields"]["fldUCalc000000001"], 8.0);

    let eleven: Vec<Value> =
        (0..11).map(|i| json!({ "fields": { "Name": format!("n{i}") } })).collect();
    let (s, b) = api.post(&format!("{BASE}/Users"), json!({ "records": eleven })).await;
    assert_eq!((s, error_type(&b)), (422, "INVALID_RECORDS"));
    assert_eq!(
        b["error"]["message"],
        "A maximum of 10 records can be created per request but you have provided 11."
    );
    assert_eq!(e.admin().records(BASE, "Users").expect("records").len(), 3);
}

#[tokio::test]
async fn a_bad_record_rejects_the_whole_batch_with_the_documented_error() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let cases = [
        (json!({ "Nope": 1 }), "UNKNOWN_FIELD_NAME"),
        (json!({ "Auto": 5 }), "INVALID_VALUE_FOR_COLUMN"),
        (json!({ "Calc": 5 }), "INVALID_VALUE_FOR_COLUMN"),
        (json!({ "Age": "old" }), "INVALID_VALUE_FOR_COLUMN"),
        (json!({ "Joined": "2024-13-45" }), "INVALID_VALUE_FOR_COLUMN"),
        (json!({ "Status": "retired" }), "INVALID_MULTIPLE_CHOICE_OPTIONS"),
        (json!({ "Company": ["recNOTTHERE000001"] }), "ROW_DOES_NOT_EXIST"),
        (json!({ "Company": "recNOTTHERE000001" }), "INVALID_VALUE_FOR_COLUMN"),
    ];
    for (bad, kind) in cases {
        let (s, b) = api
            .post(
                &format!("{BASE}/Users"),
                json!({ "records": [{ "fields": { "Name": "ok" } }, { "fields": bad }] }),
            )
            .await;
        assert_eq!((s, error_type(&b)), (422, kind), "{bad} -> {b}");
    }
    let (_, b) = api.post(&format!("{BASE}/Users"), json!({ "fields": { "Calc": 1 } })).await;
    assert_eq!(
        b["error"]["message"],
        "Field \"Calc\" cannot accept a value because the field is computed"
    );
    assert!(
        e.admin().records(BASE, "Users").expect("records").is_empty(),
        "nothing may be written"
    );
}

#[tokio::test]
async fn typecast_converts_and_creates_select_options() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (s, r) = api
        .post(
            &format!("{BASE}/Users"),
            json!({ "fields": { "Age": "42", "Active": "true", "Status": "retired", "Tags": ["a", "new"], "Joined": "2024-03-01T10:00:00Z", "Name": 7 }, "typecast": true }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["fields"]["Age"], 42.0);
    assert_eq!(r["fields"]["Active"], true);
    assert_eq!(r["fields"]["Status"], "retired");
    assert_eq!(r["fields"]["Joined"], "2024-03-01");
    assert_eq!(r["fields"]["Name"], "7");
    let (_, meta) = api.get(&format!("meta/bases/{BASE}/tables")).await;
    let status = meta["tables"][1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "Status")
        .cloned()
        .expect("status");
    assert!(status["options"]["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .any(|c| c["name"] == "retired"));
    let (_, r) = api
        .post(
            &format!("{BASE}/Users"),
            json!({ "fields": { "Seen": "2024-03-01T12:00:00+02:00" } }),
        )
        .await;
    assert_eq!(r["fields"]["Seen"], "2024-03-01T10:00:00.000Z");
}

#[tokio::test]
async fn patch_merges_put_replaces_and_unknown_ids_fail_atomically() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let ids = api
        .create_users(vec![
            json!({ "Name": "A", "Age": 1, "Email": "a@x.io" }),
            json!({ "Name": "B", "Age": 2 }),
        ])
        .await;
    let (s, r) =
        api.patch(&format!("{BASE}/Users/{}", ids[0]), json!({ "fields": { "Age": 10 } })).await;
    assert_eq!(s, 200);
    assert_eq!((r["fields"]["Name"].clone(), r["fields"]["Age"].clone()), (json!("A"), json!(10)));
    let (_, r) =
        api.put(&format!("{BASE}/Users/{}", ids[0]), json!({ "fields": { "Name": "A2" } })).await;
    assert_eq!(r["fields"]["Name"], "A2");
    assert!(
        r["fields"].get("Age").is_none() && r["fields"].get("Email").is_none(),
        "PUT clears: {r}"
    );
    let (_, r) =
        api.patch(&format!("{BASE}/Users/{}", ids[1]), json!({ "fields": { "Age": null } })).await;
    assert!(r["fields"].get("Age").is_none());

    let (s, b) = api
        .patch(&format!("{BASE}/Users"), json!({ "records": [{ "id": ids[1], "fields": { "Name": "changed" } }, { "id": "recMISSING0000001", "fields": {} }] }))
        .await;
    assert_eq!((s, error_type(&b)), (422, "ROW_DOES_NOT_EXIST"));
    assert_eq!(b["error"]["message"], "Record ID recMISSING0000001 does not exist in this table");
    let (_, r) = api.get(&format!("{BASE}/Users/{}", ids[1])).await;
    assert_eq!(r["fields"]["Name"], "B", "batch must be atomic");

    let (s, b) = api
        .patch(
            &format!("{BASE}/Users"),
            json!({ "records": [{ "id": ids[1], "fields": { "Name": "B2" } }] }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["records"][0]["fields"]["Name"], "B2");
    assert_eq!(b["records"][0]["fields"]["Auto"], 2, "batch responses carry all fields");
}

#[tokio::test]
async fn get_one_falls_back_base_wide_and_missing_is_404() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let ids = api.create_users(vec![json!({ "Name": "A" })]).await;
    let (s, r) = api.get(&format!("{BASE}/Companies/{}", ids[0])).await;
    assert_eq!((s, r["fields"]["Name"].clone()), (200, json!("A")));
    let (s, b) = api.get(&format!("{BASE}/Users/recMISSING0000001")).await;
    assert_eq!((s, error_type(&b)), (404, "MODEL_ID_NOT_FOUND"));
}

#[tokio::test]
async fn delete_single_and_batch_in_order_and_limits() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let ids = api.create_users((0..4).map(|i| json!({ "Name": format!("u{i}") })).collect()).await;
    let (s, r) = api.delete(&format!("{BASE}/Users/{}", ids[0])).await;
    assert_eq!((s, r), (200, json!({ "id": ids[0], "deleted": true })));
    let (s, r) =
        api.delete(&format!("{BASE}/Users?records%5B%5D={}&records[]={}", ids[2], ids[1])).await;
    assert_eq!(s, 200);
    assert_eq!(
        r["records"],
        json!([{ "id": ids[2], "deleted": true }, { "id": ids[1], "deleted": true }])
    );
    let (s, b) = api.delete(&format!("{BASE}/Users?records={}", ids[3])).await;
    assert_eq!((s, error_type(&b)), (422, "INVALID_RECORDS"));
    let many: String = (0..11).map(|_| format!("records[]={}&", ids[3])).collect();
    let (s, b) = api.delete(&format!("{BASE}/Users?{many}")).await;
    assert_eq!((s, error_type(&b)), (422, "INVALID_RECORDS"));
    let (s, _) = api.delete(&format!("{BASE}/Users/{}", ids[0])).await;
    assert_eq!(s, 404, "deleting a record already gone");
    assert_eq!(e.admin().records(BASE, "Users").expect("records").len(), 1);
}

#[tokio::test]
async fn links_are_validated_their_inverse_maintained_and_cleared_on_delete() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (_, co) =
        api.post(&format!("{BASE}/Companies"), json!({ "fields": { "Name": "Acme" } })).await;
    let co = co["id"].as_str().expect("id").to_owned();
    let ids = api
        .create_users(vec![
            json!({ "Name": "A", "Company": [co] }),
            json!({ "Name": "B", "Company": [co] }),
        ])
        .await;
    let (_, c) = api.get(&format!("{BASE}/Companies/{co}")).await;
    assert_eq!(c["fields"]["Users"], json!(ids), "inverse link");
    api.patch(&format!("{BASE}/Users/{}", ids[0]), json!({ "fields": { "Company": [] } })).await;
    let (_, c) = api.get(&format!("{BASE}/Companies/{co}")).await;
    assert_eq!(c["fields"]["Users"], json!([ids[1]]));
    api.delete(&format!("{BASE}/Companies/{co}")).await;
    let (_, u) = api.get(&format!("{BASE}/Users/{}", ids[1])).await;
    assert!(u["fields"].get("Company").is_none(), "link to a deleted record disappears: {u}");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let mut c = config();
    c.max_body_bytes = 1024;
    let e = start(c).await;
    let api = Api::new(&e);
    let (s, _) =
        api.post(&format!("{BASE}/Users"), json!({ "fields": { "Name": "x".repeat(2000) } })).await;
    assert_eq!(s, 413);
}
