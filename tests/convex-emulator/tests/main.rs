//! The emulator against the shared vectors (the same file the Convex module's convex-test
//! suite runs), over HTTP, plus what only the emulator has: the deploy key, faults, limits.

use convex_emulator::{Emulator, EmulatorConfig, Fault};
use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../convex");

/// convex/schema.ts's TABLES, read from the file itself.
fn schema_tables() -> Vec<String> {
    let text = std::fs::read_to_string(format!("{ROOT}/schema.ts")).expect("convex/schema.ts");
    let start = text.find("export const TABLES = [").expect("TABLES");
    let end = start + text[start..].find("] as const").expect("end of TABLES");
    text[start..end].split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

async fn emulator() -> Emulator {
    let tables = schema_tables();
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    Emulator::start(EmulatorConfig::new(&tables), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start")
}

async fn post(e: &Emulator, kind: &str, path: &str, args: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/{kind}", e.url()))
        .header("authorization", format!("Convex {}", e.deploy_key()))
        .json(&json!({ "path": path, "args": args, "format": "json" }))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The vectors' shorthands (see `about` in vectors.json).
fn expand(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(expand).collect()),
        Value::Object(m) => {
            if let Some(r) = m.get("$repeat") {
                let text = r[0].as_str().expect("text");
                return Value::String(text.repeat(r[1].as_u64().expect("n") as usize));
            }
            if let Some(many) = m.get("$many") {
                let n = many["count"].as_u64().expect("count");
                return (0..n)
                    .map(|i| json!({ "table": many["table"], "id": format!("00000000-0000-4000-8000-{i:012}"), "version": many["version"], "op": "upsert", "doc": { "n": i } }))
                    .collect();
            }
            Value::Object(m.iter().map(|(k, v)| (k.clone(), expand(v))).collect())
        }
        other => other.clone(),
    }
}

async fn page_all(e: &Emulator, table: &str, n: u64) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let (status, body) = post(
            e,
            "query",
            "mirror:snapshot",
            json!({ "table": table, "cursor": cursor, "numItems": n }),
        )
        .await;
        assert_eq!((status, &body["status"]), (200, &json!("success")), "{body}");
        let v = &body["value"];
        pages.push(v["page"].as_array().expect("page").clone());
        if v["isDone"] == true {
            return pages;
        }
        cursor = v["continueCursor"].clone();
    }
}

#[tokio::test]
async fn the_shared_vectors_hold() {
    let text = std::fs::read_to_string(format!("{ROOT}/tests/vectors.json")).expect("vectors");
    let vectors: Value = serde_json::from_str(&text).expect("json");
    let cases = vectors["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "the vectors are there");
    for c in cases {
        let name = c["name"].as_str().expect("name");
        let e = emulator().await;
        for step in c["steps"].as_array().expect("steps") {
            let (status, body) =
                post(&e, "mutation", "mirror:apply", json!({ "changes": expand(&step["apply"]) }))
                    .await;
            assert_eq!(status, 200, "{name}: {body}");
            match step.get("error").and_then(Value::as_str) {
                Some(error) => {
                    assert_eq!(body["status"], "error", "{name}: {body}");
                    let message = body["errorMessage"].as_str().expect("message");
                    assert!(message.contains(error), "{name}: {message:?} lacks {error:?}");
                }
                None => {
                    assert_eq!(body["status"], "success", "{name}: {body}");
                    assert_eq!(body["value"], step["expect"], "{name}");
                }
            }
        }
        for (table, rows) in c.get("state").and_then(Value::as_object).into_iter().flatten() {
            let docs: Vec<Value> = page_all(&e, table, 1000).await.concat();
            assert_eq!(&Value::Array(docs), rows, "{name}: {table}");
        }
        for (table, count) in c.get("counts").and_then(Value::as_object).into_iter().flatten() {
            assert_eq!(
                page_all(&e, table, 1000).await.concat().len() as u64,
                count.as_u64().expect("n"),
                "{name}"
            );
        }
        if let Some(p) = c.get("pages") {
            let pages = page_all(
                &e,
                p["table"].as_str().expect("table"),
                p["numItems"].as_u64().expect("n"),
            )
            .await;
            let ids: Vec<Vec<Value>> = pages
                .into_iter()
                .map(|p| p.into_iter().map(|d| d["id"].clone()).collect::<Vec<_>>())
                .filter(|p| !p.is_empty())
                .collect();
            assert_eq!(json!(ids), p["ids"], "{name}");
        }
    }
}

#[tokio::test]
async fn a_wrong_deploy_key_is_401_and_a_scripted_fault_is_answered_once() {
    let e = emulator().await;
    let r = reqwest::Client::new()
        .post(format!("{}/api/mutation", e.url()))
        .header("authorization", "Convex wrong")
        .json(&json!({ "path": "mirror:apply", "args": { "changes": [] }, "format": "json" }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    let change = json!({ "changes": [{ "table": "goals", "id": "a", "version": "1", "op": "upsert", "doc": { "name": "x" } }] });
    e.admin().fail_next(&[Fault::Status(503), Fault::FailAfterApply]);
    assert_eq!(post(&e, "mutation", "mirror:apply", change.clone()).await.0, 503);
    assert_eq!(e.admin().table("goals").expect("goals").len(), 0, "a 503 applies nothing");
    assert_eq!(post(&e, "mutation", "mirror:apply", change.clone()).await.0, 500);
    assert_eq!(e.admin().table("goals").expect("goals").len(), 1, "applied, then the answer lost");
    let (status, body) = post(&e, "mutation", "mirror:apply", change).await;
    assert_eq!(
        (status, &body["value"]),
        (200, &json!({ "applied": 1, "stale": 0 })),
        "the retry is a replay"
    );
    let (_, body) = post(&e, "mutation", "mirror:remove", json!({})).await;
    assert_eq!(body["status"], "error", "an unknown function is a function error");
    let s = e.admin().stats();
    assert_eq!((s.unauthorized, s.faults, s.function_errors), (1, 2, 1));
}
