use crate::support::*;
use airtable_emulator::mac_header;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::{
    atomic::{AtomicU16, Ordering},
    Arc, Mutex,
};
use std::time::Duration;

fn spec(extra: Value) -> Value {
    let mut s = json!({ "options": { "filters": { "dataTypes": ["tableData"] } } });
    if let (Some(o), Some(e)) = (s["options"].as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "filters" {
                for (fk, fv) in v.as_object().expect("filters") {
                    o["filters"][fk] = fv.clone();
                }
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    s
}

async fn create_hook(api: &Api, url: Option<&str>, extra: Value) -> (String, Vec<u8>) {
    let mut body = json!({ "specification": spec(extra) });
    if let Some(u) = url {
        body["notificationUrl"] = json!(u);
    }
    let (s, r) = api.post(&format!("bases/{BASE}/webhooks"), body).await;
    assert_eq!(s, 200, "{r}");
    let id = r["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ach") && id.len() == 17);
    let secret = base64::engine::general_purpose::STANDARD
        .decode(r["macSecretBase64"].as_str().expect("secret"))
        .expect("base64");
    (id, secret)
}

async fn payloads(api: &Api, hook: &str, cursor: u64) -> Value {
    let (s, r) = api.get(&format!("bases/{BASE}/webhooks/{hook}/payloads?cursor={cursor}")).await;
    assert_eq!(s, 200, "{r}");
    r
}

#[tokio::test]
async fn every_change_produces_a_payload_in_the_documented_shape() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (hook, _) = create_hook(&api, None, json!({ "includes": { "includePreviousCellValues": true, "includeCellValuesInFieldIds": ["fldUEmail00000001"] } })).await;
    let (_, co) =
        api.post(&format!("{BASE}/Companies"), json!({ "fields": { "Name": "Acme" } })).await;
    let co = co["id"].as_str().expect("id").to_owned();
    let ids = api
        .create_users(vec![
            json!({ "Name": "Ann", "Email": "ann@x.io", "Status": "active", "Company": [co] }),
        ])
        .await;
    api.patch(
        &format!("{BASE}/Users/{}", ids[0]),
        json!({ "fields": { "Name": "Anne", "Status": "disabled" } }),
    )
    .await;
    e.admin().update_record(BASE, "Users", &ids[0], json!({ "Age": 30 })).expect("ui edit");
    api.delete(&format!("{BASE}/Users/{}", ids[0])).await;

    let page = payloads(&api, &hook, 1).await;
    assert_eq!(page["mightHaveMore"], false);
    let list = page["payloads"].as_array().expect("payloads");
    assert_eq!(list.len(), 5, "{page:#}");
    assert_eq!(page["cursor"], 6);
    let numbers: Vec<u64> =
        list.iter().map(|p| p["baseTransactionNumber"].as_u64().expect("txn")).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "one transaction number per transaction: {numbers:?}"
    );

    // Creation: V2 cells keyed by field id; selects as objects, links as {id, name}.
    let created = &list[1]["changedTablesById"]["tblUSERS000000001"]["createdRecordsById"][&ids[0]];
    assert_eq!(list[1]["payloadFormat"], "v0");
    assert_eq!(list[1]["actionMetadata"]["source"], "publicApi");
    assert_eq!(
        created["cellValuesByFieldId"]["fldUStatus0000001"],
        json!({ "id": "selActive00000001", "name": "active", "color": "greenLight2" })
    );
    assert_eq!(
        created["cellValuesByFieldId"]["fldUCompany000001"],
        json!([{ "id": co, "name": "Acme" }])
    );
    // The inverse link changed on the company in the same transaction.
    assert!(
        list[1]["changedTablesById"]["tblCOMPANIES00001"]["changedRecordsById"][&co].is_object()
    );

    let changed = &list[2]["changedTablesById"]["tblUSERS000000001"]["changedRecordsById"][&ids[0]];
    assert_eq!(changed["current"]["cellValuesByFieldId"]["fldUName000000001"], "Anne");
    assert_eq!(changed["previous"]["cellValuesByFieldId"]["fldUName000000001"], "Ann");
    assert_eq!(changed["previous"]["cellValuesByFieldId"]["fldUStatus0000001"]["name"], "active");
    assert_eq!(
        changed["unchanged"]["cellValuesByFieldId"],
        json!({ "fldUEmail00000001": "ann@x.io" })
    );

    assert_eq!(list[3]["actionMetadata"]["source"], "client", "UI edits come from the client");
    assert_eq!(
        list[4]["changedTablesById"]["tblUSERS000000001"]["destroyedRecordIds"],
        json!([ids[0]])
    );

    // Cursor semantics: resume anywhere; an empty page echoes the cursor.
    let tail = payloads(&api, &hook, 5).await;
    assert_eq!(tail["payloads"].as_array().expect("p").len(), 1);
    let empty = payloads(&api, &hook, 6).await;
    assert_eq!(
        (empty["cursor"].clone(), empty["mightHaveMore"].clone(), empty["payloads"].clone()),
        (json!(6), json!(false), json!([]))
    );
}

#[tokio::test]
async fn payload_pages_hold_at_most_the_limit_and_say_there_is_more() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (hook, _) = create_hook(&api, None, json!({})).await;
    for i in 0..60 {
        api.post(&format!("{BASE}/Users"), json!({ "fields": { "Name": format!("u{i}") } })).await;
    }
    let page = payloads(&api, &hook, 1).await;
    assert_eq!(
        (
            page["payloads"].as_array().expect("p").len(),
            page["mightHaveMore"].clone(),
            page["cursor"].clone()
        ),
        (50, json!(true), json!(51))
    );
    let (s, _) = api.get(&format!("bases/{BASE}/webhooks/{hook}/payloads?limit=51")).await;
    assert_eq!(s, 422);
    let (_, page) =
        api.get(&format!("bases/{BASE}/webhooks/{hook}/payloads?cursor=51&limit=5")).await;
    assert_eq!(
        (page["payloads"].as_array().expect("p").len(), page["mightHaveMore"].clone()),
        (5, json!(true))
    );
}

#[tokio::test]
async fn filters_scope_change_types_sources_and_watched_fields() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (scoped, _) =
        create_hook(&api, None, json!({ "filters": { "recordChangeScope": "tblCOMPANIES00001" } }))
            .await;
    let (adds, _) = create_hook(&api, None, json!({ "filters": { "changeTypes": ["add"] } })).await;
    let (ui, _) =
        create_hook(&api, None, json!({ "filters": { "fromSources": ["client"] } })).await;
    let (watch, _) = create_hook(&api, None, json!({ "filters": { "watchDataInFieldIds": ["fldUAge0000000001"], "changeTypes": ["update"] } })).await;
    let ids = api.create_users(vec![json!({ "Name": "A" })]).await;
    api.patch(&format!("{BASE}/Users/{}", ids[0]), json!({ "fields": { "Name": "B" } })).await;
    api.patch(&format!("{BASE}/Users/{}", ids[0]), json!({ "fields": { "Age": 3 } })).await;
    e.admin().create_records(BASE, "Users", vec![json!({ "Name": "from ui" })]).expect("ui");
    let count = |v: &Value| v["payloads"].as_array().expect("p").len();
    assert_eq!(count(&payloads(&api, &scoped, 1).await), 0);
    assert_eq!(count(&payloads(&api, &adds, 1).await), 2);
    assert_eq!(count(&payloads(&api, &ui, 1).await), 1);
    assert_eq!(count(&payloads(&api, &watch, 1).await), 1);
    let (s, _) = api
        .post(
            &format!("bases/{BASE}/webhooks"),
            json!({ "specification": { "options": { "filters": {} } } }),
        )
        .await;
    assert_eq!(s, 422, "dataTypes is required");
    let (s, _) = api.post(&format!("bases/{BASE}/webhooks"), json!({ "specification": spec(json!({ "filters": { "recordChangeScope": "tblNOPE0000000000" } })) })).await;
    assert_eq!(s, 422);
}

#[tokio::test]
async fn list_refresh_enable_delete_limit_and_expiry() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (hook, _) = create_hook(&api, Some("http://127.0.0.1:9/unused"), json!({})).await;
    let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
    let h = &list["webhooks"][0];
    assert_eq!(
        (
            h["id"].as_str(),
            h["areNotificationsEnabled"].clone(),
            h["isHookEnabled"].clone(),
            h["cursorForNextPayload"].clone()
        ),
        (Some(hook.as_str()), json!(true), json!(true), json!(1))
    );
    assert!(h["lastNotificationResult"].is_null());

    let (s, body) = api
        .post(
            &format!("bases/{BASE}/webhooks/{hook}/enableNotifications"),
            json!({ "enable": false }),
        )
        .await;
    assert_eq!((s, body), (200, Value::Null));
    let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
    assert_eq!(list["webhooks"][0]["areNotificationsEnabled"], false);

    e.admin().advance_clock(chrono::Duration::days(6));
    let (s, r) = api.post(&format!("bases/{BASE}/webhooks/{hook}/refresh"), json!({})).await;
    assert_eq!(s, 200);
    assert!(r["expirationTime"].is_string());
    e.admin().advance_clock(chrono::Duration::days(6));
    api.create_users(vec![json!({ "Name": "still alive" })]).await;
    assert_eq!(payloads(&api, &hook, 1).await["payloads"].as_array().expect("p").len(), 1);

    // Seven days with neither refresh nor listing: the hook expires and records nothing.
    e.admin().advance_clock(chrono::Duration::days(8));
    api.create_users(vec![json!({ "Name": "too late" })]).await;
    let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
    assert_eq!(list["webhooks"][0]["isHookEnabled"], false);
    let (s, _) = api.post(&format!("bases/{BASE}/webhooks/{hook}/refresh"), json!({})).await;
    assert_eq!(s, 422);

    for _ in 0..9 {
        create_hook(&api, None, json!({})).await;
    }
    let (s, _) = api
        .post(&format!("bases/{BASE}/webhooks"), json!({ "specification": spec(json!({})) }))
        .await;
    assert_eq!(s, 422, "at most 10 webhooks per base");
    let (s, _) = api.delete(&format!("bases/{BASE}/webhooks/{hook}")).await;
    assert_eq!(s, 200);
    let (s, _) = api.delete(&format!("bases/{BASE}/webhooks/{hook}")).await;
    assert_eq!(s, 403);
}

/// (X-Airtable-Content-MAC, raw body) of every ping received.
type Pings = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Receiver {
    pings: Pings,
    status: Arc<AtomicU16>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let mac = headers
        .get("x-airtable-content-mac")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    r.pings.lock().expect("lock").push((mac, body.to_vec()));
    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

async fn receiver(status: u16) -> (Receiver, String) {
    let r = Receiver::default();
    r.status.store(status, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/ping", listener.local_addr().expect("addr"));
    let app = Router::new().route("/ping", post(receive)).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

#[tokio::test]
async fn pings_are_signed_over_the_raw_body_and_carry_no_change_data() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (rx, url) = receiver(204).await;
    let (hook, secret) = create_hook(&api, Some(&url), json!({})).await;
    api.create_users(vec![json!({ "Name": "A" })]).await;
    eventually(Duration::from_secs(5), "a ping", || async {
        !rx.pings.lock().expect("lock").is_empty()
    })
    .await;
    let (mac, body) = rx.pings.lock().expect("lock")[0].clone();
    assert_eq!(mac, mac_header(&secret, &body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["base"]["id"], BASE);
    assert_eq!(v["webhook"]["id"], hook.as_str());
    assert!(v["timestamp"].as_str().expect("ts").ends_with('Z'));
    assert!(!String::from_utf8_lossy(&body).contains('\n'), "compact body");
    eventually(Duration::from_secs(5), "success recorded", || async {
        let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
        list["webhooks"][0]["lastNotificationResult"]["success"] == true
            && list["webhooks"][0]["lastSuccessfulNotificationTime"].is_string()
    })
    .await;
}

#[tokio::test]
async fn failing_pings_are_retried_then_notifications_are_switched_off() {
    let mut c = config();
    c.ping_retry_base = Duration::from_millis(10);
    c.ping_retries = 3;
    let e = start(c).await;
    let api = Api::new(&e);
    let (rx, url) = receiver(500).await;
    create_hook(&api, Some(&url), json!({})).await;
    api.create_users(vec![json!({ "Name": "A" })]).await;
    eventually(Duration::from_secs(10), "notifications disabled", || async {
        let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
        list["webhooks"][0]["areNotificationsEnabled"] == false
    })
    .await;
    assert_eq!(rx.pings.lock().expect("lock").len(), 4, "first attempt + 3 retries");
    let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
    let last = &list["webhooks"][0]["lastNotificationResult"];
    assert_eq!(
        (last["success"].clone(), last["retryNumber"].clone(), last["willBeRetried"].clone()),
        (json!(false), json!(3), json!(false))
    );
    // Payloads keep accumulating while notifications are off.
    api.create_users(vec![json!({ "Name": "B" })]).await;
    let hook = list["webhooks"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(payloads(&api, &hook, 1).await["payloads"].as_array().expect("p").len(), 2);
}

#[tokio::test]
async fn deleting_a_watched_field_gives_an_error_payload_and_stops_the_hook() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let (hook, _) = create_hook(
        &api,
        None,
        json!({ "filters": { "watchDataInFieldIds": ["fldUAge0000000001"] } }),
    )
    .await;
    e.admin().delete_field(BASE, "Users", "Age").expect("delete field");
    let page = payloads(&api, &hook, 1).await;
    assert_eq!(page["payloads"][0]["error"], true);
    assert_eq!(page["payloads"][0]["code"], "INVALID_FILTERS");
    let (_, list) = api.get(&format!("bases/{BASE}/webhooks")).await;
    assert_eq!(list["webhooks"][0]["isHookEnabled"], false);
}

#[tokio::test]
async fn large_transactions_can_be_split_across_payloads_sharing_a_transaction_number() {
    let mut c = config();
    c.max_records_per_payload = Some(3);
    let e = start(c).await;
    let api = Api::new(&e);
    let (hook, _) = create_hook(&api, None, json!({})).await;
    api.create_users((0..7).map(|i| json!({ "Name": format!("u{i}") })).collect()).await;
    let page = payloads(&api, &hook, 1).await;
    let list = page["payloads"].as_array().expect("p");
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|p| p["baseTransactionNumber"] == list[0]["baseTransactionNumber"]));
}
