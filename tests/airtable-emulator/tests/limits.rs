use crate::support::*;
use airtable_emulator::RateLimits;
use std::time::Duration;

fn limited(per_base: u32, per_token: u32, penalty_ms: u64) -> airtable_emulator::EmulatorConfig {
    let mut c = config();
    c.limits = RateLimits {
        per_base: Some(per_base),
        per_token: Some(per_token),
        window: Duration::from_secs(1),
        penalty: Duration::from_millis(penalty_ms),
        retry_after_header: true,
    };
    c
}

#[tokio::test]
async fn the_sixth_request_in_a_second_gets_429_and_the_base_waits_out_the_penalty() {
    let e = start(limited(5, 50, 30_000)).await;
    let api = Api::new(&e);
    for _ in 0..5 {
        assert_eq!(api.get(&format!("{BASE}/Users")).await.0, 200);
    }
    let r = api
        .http
        .get(format!("{}/v0/{BASE}/Users", e.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("30"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({ "errors": [{ "error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later" }] })
    );
    // Still refused inside the penalty, and counted as a request sent during the penalty.
    assert_eq!(api.get(&format!("{BASE}/Users")).await.0, 429);
    let stats = e.admin().stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.requests_during_penalty, 1);
    // Other bases and token-only endpoints are not the penalised base.
    assert_eq!(api.get("meta/whoami").await.0, 200);
}

#[tokio::test]
async fn the_penalty_ends_and_requests_succeed_again() {
    let e = start(limited(2, 50, 200)).await;
    let api = Api::new(&e);
    for _ in 0..2 {
        assert_eq!(api.get(&format!("{BASE}/Users")).await.0, 200);
    }
    assert_eq!(api.get(&format!("{BASE}/Users")).await.0, 429);
    eventually(Duration::from_secs(5), "penalty to end", || async {
        api.get(&format!("{BASE}/Users")).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn the_per_token_limit_spans_bases() {
    let e = start(limited(100, 3, 30_000)).await;
    let api = Api::new(&e);
    for _ in 0..3 {
        assert_eq!(api.get("meta/bases").await.0, 200);
    }
    assert_eq!(api.get(&format!("{BASE}/Users")).await.0, 429);
    assert_eq!(api.get("meta/whoami").await.0, 429);
}

#[tokio::test]
async fn limits_can_be_changed_at_run_time() {
    let e = start(limited(1, 50, 30_000)).await;
    let api = Api::new(&e);
    e.admin().set_limits(RateLimits::off());
    for _ in 0..20 {
        assert_eq!(api.get(&format!("{BASE}/Users")).await.0, 200);
    }
}
