//! Meta API schema writes (contract §8.1): scope, strict options, inverse links, renames
//! that keep ids; and links that must point at the linked table.

use crate::support::*;
use serde_json::json;

const ALL: [&str; 5] = [
    "data.records:read",
    "data.records:write",
    "schema.bases:read",
    "schema.bases:write",
    "webhook:manage",
];

#[tokio::test]
async fn schema_writes_need_the_scope_and_exact_options() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let fields = format!("meta/bases/{BASE}/tables/tblUSERS000000001/fields");
    let (s, b) = api.post(&fields, json!({ "name": "Nickname", "type": "singleLineText" })).await;
    assert_eq!((s, error_type(&b)), (403, "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND"));

    e.admin().set_scopes(&ALL);
    let (_, who) = api.get("meta/whoami").await;
    assert!(who["scopes"].as_array().expect("scopes").contains(&json!("schema.bases:write")));
    for (body, why) in [
        (json!({ "name": "A", "type": "singleLineText", "options": {} }), "text takes no options"),
        (json!({ "name": "B", "type": "number" }), "number needs precision"),
        (
            json!({ "name": "C", "type": "checkbox", "options": { "icon": "check" } }),
            "checkbox needs color",
        ),
        (
            json!({ "name": "D", "type": "dateTime", "options": { "dateFormat": { "name": "iso" } } }),
            "dateTime needs time",
        ),
        (json!({ "name": "E", "type": "formula", "options": { "formula": "1" } }), "computed"),
        (
            json!({ "name": "name", "type": "singleLineText" }),
            "names are unique regardless of case",
        ),
    ] {
        let (s, b) = api.post(&fields, body).await;
        assert_eq!(s, 422, "{why}: {b}");
    }
    let (s, f) = api
        .post(&fields, json!({ "name": "Score", "type": "number", "options": { "precision": 0 } }))
        .await;
    assert_eq!(s, 200, "{f}");
    assert!(f["id"].as_str().expect("id").starts_with("fld"));
    assert_eq!((f["name"].clone(), f["type"].clone()), (json!("Score"), json!("number")));
}

#[tokio::test]
async fn a_new_table_and_a_link_to_it_get_ids_and_an_inverse_field() {
    let e = start(config()).await;
    e.admin().set_scopes(&ALL);
    let api = Api::new(&e);
    let (s, b) = api
        .post(&format!("meta/bases/{BASE}/tables"), json!({ "name": "Teams", "fields": [{ "name": "Link", "type": "multipleRecordLinks", "options": { "linkedTableId": "tblUSERS000000001" } }] }))
        .await;
    assert_eq!(s, 422, "a link cannot be the primary field: {b}");
    let (s, t) = api
        .post(&format!("meta/bases/{BASE}/tables"), json!({ "name": "Teams", "fields": [{ "name": "Title", "type": "singleLineText" }, { "name": "Members", "type": "multipleRecordLinks", "options": { "linkedTableId": "tblUSERS000000001" } }] }))
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["primaryFieldId"], t["fields"][0]["id"]);
    let members = &t["fields"][1];
    assert_eq!(members["options"]["linkedTableId"], "tblUSERS000000001");
    let (_, tables) = api.get(&format!("meta/bases/{BASE}/tables")).await;
    let users = tables["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == "Users")
        .cloned()
        .expect("users");
    let inverse = users["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["id"] == members["options"]["inverseLinkFieldId"])
        .cloned()
        .expect("the inverse field");
    assert_eq!(
        (inverse["name"].clone(), inverse["options"]["linkedTableId"].clone()),
        (json!("Teams"), t["id"].clone())
    );
}

#[tokio::test]
async fn renames_keep_ids_and_ids_keep_working_on_the_wire() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let [ann] =
        api.create_users(vec![json!({ "Name": "Ann", "Age": 3 })]).await.try_into().expect("one");
    e.admin().rename_field(BASE, "Users", "Age", "Years").expect("rename field");
    e.admin().rename_table(BASE, "Users", "People").expect("rename table");
    let (s, _) = api.get(&format!("{BASE}/Users")).await;
    assert_eq!(s, 403, "the old table name is gone");
    let (s, r) =
        api.get(&format!("{BASE}/tblUSERS000000001/{ann}?returnFieldsByFieldId=true")).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["fields"]["fldUAge0000000001"], 3);
    let (s, r) = api
        .patch(
            &format!("{BASE}/tblUSERS000000001"),
            json!({ "records": [{ "id": ann, "fields": { "fldUAge0000000001": 4 } }] }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["records"][0]["fields"]["Years"], 4);
    let (_, tables) = api.get(&format!("meta/bases/{BASE}/tables")).await;
    assert_eq!(tables["tables"][1]["name"], "People");
}

#[tokio::test]
async fn a_link_to_a_record_of_another_table_is_refused() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let [ann] = api.create_users(vec![json!({ "Name": "Ann" })]).await.try_into().expect("one");
    // Users.Company links to Companies: a Users record id there is the wrong table.
    let (s, b) = api
        .post(&format!("{BASE}/Users"), json!({ "fields": { "Name": "Bob", "Company": [ann] } }))
        .await;
    assert_eq!((s, error_type(&b)), (422, "ROW_DOES_NOT_EXIST"), "{b}");
}
