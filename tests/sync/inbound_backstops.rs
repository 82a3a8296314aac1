//! The safety polls follow the webhooks' health: while the webhooks are healthy the users
//! poll waits for its healthy interval from the start, and the moment they break it runs at
//! its full speed again.

use super::{inbound::receiving, inbound_stamps::users_requests};
use std::time::Duration;
use testkit::{
    airtable::{BASE, TOKEN},
    cdc::wait_until,
    inbound::hook_id,
    test_db,
};

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn healthy_webhooks_hold_the_users_poll_back_and_broken_ones_bring_it_back() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |c| {
        c.webhook_poll = Duration::from_millis(300);
        c.users_poll = Duration::from_millis(1500);
        c.users_poll_healthy = Duration::from_secs(3600);
    })
    .await;
    let listings = || e.admin().stats().count("webhook_list");
    // The watch has found both hooks healthy.
    wait_until(LIMIT, "the webhooks were checked", || async { listings() >= 2 }).await;
    let polls = users_requests(&e, "list");
    let from = listings();
    // Ten watch rounds (3 s) are two of the users poll's full intervals.
    wait_until(LIMIT, "ten more watch rounds", || async { listings() >= from + 10 }).await;
    assert_eq!(users_requests(&e, "list"), polls, "healthy webhooks: no users poll");
    // Notifications switched off: pings no longer come, the webhooks are not healthy.
    let hook = hook_id(&db.pool, "users").await.expect("hook");
    let off = reqwest::Client::new()
        .post(format!("{}/v0/bases/{BASE}/webhooks/{hook}/enableNotifications", e.url()))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "enable": false }))
        .send()
        .await
        .expect("disable");
    assert!(off.status().is_success(), "{}", off.status());
    wait_until(LIMIT, "the users poll runs again", || async { users_requests(&e, "list") > polls })
        .await;
    r.stop().await;
}
