use crate::support::*;
use airtable_emulator::{Faults, Scripted};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn scripted_faults_fail_before_apply_or_lose_the_response_after_apply() {
    let e = start(config()).await;
    let api = Api::new(&e);
    let path = format!("{BASE}/Users");
    e.admin().script_faults(vec![
        Scripted::Error(503),
        Scripted::Error(502),
        Scripted::FailAfterApply,
        Scripted::DropAfterApply,
        Scripted::Drop,
        Scripted::RateLimit,
    ]);

    let (s, _) = api.post(&path, json!({ "fields": { "Name": "a" } })).await;
    assert_eq!(s, 503);
    let r = api
        .http
        .post(format!("{}/v0/{path}", e.url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "fields": { "Name": "b" } }))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    assert!(r.text().await.expect("text").starts_with("<html>"), "gateway errors are not JSON");
    assert!(
        e.admin().records(BASE, "Users").expect("r").is_empty(),
        "failures before apply write nothing"
    );

    let (s, _) = api.post(&path, json!({ "fields": { "Name": "applied-then-500" } })).await;
    assert_eq!(s, 500);
    let dropped = api
        .http
        .post(format!("{}/v0/{path}", e.url()))
        .bearer_auth(TOKEN)
        .json(&json!({ "fields": { "Name": "applied-then-dropped" } }))
        .send()
        .await;
    let lost = match dropped {
        Err(_) => true,
        Ok(r) => r.text().await.is_err(),
    };
    assert!(lost, "the client must not get a response");
    let names: Vec<String> = e
        .admin()
        .records(BASE, "Users")
        .expect("r")
        .iter()
        .map(|r| r["fields"]["Name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    let before = e.admin().records(BASE, "Users").expect("r").len();
    let dropped = api.http.get(format!("{}/v0/{path}", e.url())).bearer_auth(TOKEN).send().await;
    assert!(match dropped {
        Err(_) => true,
        Ok(r) => r.text().await.is_err(),
    });
    let (s, _) = api.get(&path).await;
    assert_eq!(s, 429, "a storm 429 starts the base's penalty");
    assert_eq!(api.get(&path).await.0, 429);
    assert_eq!(e.admin().records(BASE, "Users").expect("r").len(), before);
    assert_eq!(e.admin().stats().faults_injected, 6);
}

#[tokio::test]
async fn random_faults_are_seeded_and_latency_is_added() {
    let run = |seed: u64| async move {
        let mut c = config();
        c.seed = seed;
        c.faults = Faults { error_rate: 0.5, ..Faults::default() };
        let e = start(c).await;
        let api = Api::new(&e);
        let mut statuses = Vec::new();
        for _ in 0..30 {
            statuses.push(api.get(&format!("{BASE}/Users")).await.0);
        }
        statuses
    };
    let a = run(42).await;
    assert_eq!(a, run(42).await, "same seed, same faults");
    assert!(a.contains(&200) && a.iter().any(|s| *s >= 500));

    let mut c = config();
    c.faults = Faults { latency_ms: 150, ..Faults::default() };
    let e = start(c).await;
    let api = Api::new(&e);
    let t = Instant::now();
    api.get(&format!("{BASE}/Users")).await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    e.admin().set_faults(Faults::default());
    let t = Instant::now();
    api.get(&format!("{BASE}/Users")).await;
    assert!(t.elapsed() < Duration::from_millis(150));
}
