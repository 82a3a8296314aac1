use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashSet;

async fn seed(api: &Api, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        api.create_users(
            chunk
                .iter()
                .map(|i| json!({ "Name": format!("user{i:03}"), "Age": i, "Active": i % 2 == 0 }))
                .collect(),
        )
        .await;
    }
}

fn names(body: &Value) -> Vec<String> {
    body["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["fields"]["Name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn pagination_walks_every_record_once_with_an_opaque_offset() {
    let e = start(config()).await;
    let api = Api::new(&e);
    seed(&api, 250).await;
    let mut seen = HashSet::new();
    let mut offset: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = offset.as_ref().map(|o| format!("&offset={}", urlencode(o))).unwrap_or_default();
        let (s, body) = api.get(&format!("{BASE}/Users?pageSize=100{q}")).await;
        assert_eq!(s, 200, "{body}");
        pages += 1;
        for r in body["records"].as_array().expect("records") {
            assert!(seen.insert(r["id"].as_str().expect("id").to_owned()), "duplicate record");
        }
        match body.get("offset").and_then(Value::as_str) {
            Some(o) => {
                assert!(o.starts_with("itr") && o.contains("/rec"), "{o}");
                offset = Some(o.to_owned());
            }
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (250, 3));
    let (s, b) = api.get(&format!("{BASE}/Users?pageSize=101")).await;
    assert_eq!(s, 422, "{b}");
    let (_, b) = api.get(&format!("{BASE}/Users?maxRecords=15&pageSize=10")).await;
    assert_eq!(b["records"].as_array().expect("r").len(), 10);
}

fn urlencode(s: &str) -> String {
    s.replace('/', "%2F")
}

#[tokio::test]
async fn offsets_expire_and_are_bound_to_their_table() {
    let e = start(config()).await;
    let api = Api::new(&e);
    seed(&api, 3).await;
    let (_, b) = api.get(&format!("{BASE}/Users?pageSize=1")).await;
    let offset = b["offset"].as_str().expect("offset").to_owned();
    let (s, b) = api.get(&format!("{BASE}/Companies?offset={offset}")).await;
    assert_eq!((s, error_type(&b)), (422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"));
    let (_, b) = api.get(&format!("{BASE}/Users?pageSize=1")).await;
    let offset = b["offset"].as_str().expect("offset").to_owned();
    e.admin().advance_clock(chrono::Duration::minutes(10));
    let (s, b) = api.get(&format!("{BASE}/Users?pageSize=1&offset={offset}")).await;
    assert_eq!((s, error_type(&b)), (422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"));
}

#[tokio::test]
async fn sort_fields_and_field_ids_with_encoded_or_raw_brackets() {
    let e = start(config()).await;
    let api = Api::new(&e);
    seed(&api, 5).await;
    let (_, b) = api.get(&format!("{BASE}/Users?sort%5B0%5D%5Bfield%5D=Age&sort%5B0%5D%5Bdirection%5D=desc&fields%5B%5D=Name")).await;
    assert_eq!(names(&b), ["user004", "user003", "user002", "user001", "user000"]);
    assert_eq!(b["records"][0]["fields"].as_object().expect("f").len(), 1, "only the asked fields");
    let (_, b) = api
        .get(&format!(
            "{BASE}/Users?sort[0][field]=Name&fields[]=fldUAge0000000001&returnFieldsByFieldId=1"
        ))
        .await;
    assert_eq!(b["records"][1]["fields"], json!({ "fldUAge0000000001": 1 }));
    let (s, b) = api.get(&format!("{BASE}/Users?fields[]=Nope")).await;
    assert_eq!((s, error_type(&b)), (422, "UNKNOWN_FIELD_NAME"));
    let (s, b) = api.get(&format!("{BASE}/Users?view=NoSuchView")).await;
    assert_eq!((s, error_type(&b)), (422, "VIEW_NAME_NOT_FOUND"));
    let (s, _) = api.get(&format!("{BASE}/Users?view=Grid%20view")).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn filter_by_formula_supports_the_polling_subset_and_rejects_the_rest() {
    let e = start(config()).await;
    let api = Api::new(&e);
    seed(&api, 10).await;
    let q =
        |f: &str| format!("{BASE}/Users?sort[0][field]=Age&filterByFormula={}", percent_encode(f));
    let (_, b) = api.get(&q("{Name}='user003'")).await;
    assert_eq!(names(&b), ["user003"]);
    let (_, b) = api.get(&q("AND({Age} >= 7, NOT({Active}))")).await;
    assert_eq!(names(&b), ["user007", "user009"]);
    let (_, b) = api.get(&q("OR({Age}=1, {Age}=2)")).await;
    assert_eq!(names(&b), ["user001", "user002"]);
    let id = b["records"][0]["id"].as_str().expect("id").to_owned();
    let (_, b) = api.get(&q(&format!("RECORD_ID()='{id}'"))).await;
    assert_eq!(names(&b), ["user001"]);
    let (_, b) = api.get(&q("IS_AFTER(LAST_MODIFIED_TIME(), '2000-01-01T00:00:00Z')")).await;
    assert_eq!(names(&b).len(), 10);
    let (_, b) = api.get(&q("IS_AFTER(LAST_MODIFIED_TIME(), '2999-01-01T00:00:00Z')")).await;
    assert!(names(&b).is_empty());
    let (_, b) = api.get(&q("LAST_MODIFIED_TIME() > '2000-01-01'")).await;
    assert_eq!(names(&b).len(), 10);
    for bad in ["{Nope}=1", "REGEX_MATCH({Name}, 'x')", "{Age} >", "AND("] {
        let (s, b) = api.get(&q(bad)).await;
        assert_eq!((s, error_type(&b)), (422, "INVALID_FILTER_BY_FORMULA"), "{bad}");
    }
    // POST listRecords takes the same parameters in the body.
    let (s, b) = api
        .post(&format!("{BASE}/Users/listRecords"), json!({ "filterByFormula": "{Age} < 3", "sort": [{ "field": "Age", "direction": "desc" }], "fields": ["Name"], "pageSize": 2 }))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(names(&b), ["user002", "user001"]);
    let offset = b["offset"].clone();
    let (_, b) = api.post(&format!("{BASE}/Users/listRecords"), json!({ "offset": offset })).await;
    assert_eq!(names(&b), ["user000"]);
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn a_record_edited_mid_pagination_keeps_its_place_with_current_values() {
    let e = start(config()).await;
    let api = Api::new(&e);
    seed(&api, 4).await;
    let (_, b) = api.get(&format!("{BASE}/Users?sort[0][field]=Age&pageSize=2")).await;
    let offset = b["offset"].as_str().expect("offset").to_owned();
    let (_, all) = api.get(&format!("{BASE}/Users?sort[0][field]=Age")).await;
    let third = all["records"][2]["id"].as_str().expect("id").to_owned();
    api.patch(
        &format!("{BASE}/Users/{third}"),
        json!({ "fields": { "Age": 100, "Name": "edited" } }),
    )
    .await;
    let (_, b) =
        api.get(&format!("{BASE}/Users?sort[0][field]=Age&pageSize=2&offset={offset}")).await;
    assert_eq!(names(&b), ["edited", "user003"]);
}
