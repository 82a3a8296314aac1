//! The real Python client, pyairtable, sees the emulator as Airtable.

use crate::support::*;
use airtable_emulator::RateLimits;
use std::process::Command;
use std::time::Duration;

#[tokio::test]
async fn pyairtable_talks_to_the_emulator_as_to_airtable() {
    let mut c = config();
    // Generous enough for the script's ~40 requests; the script then triggers a 429 itself.
    c.limits = RateLimits {
        per_base: Some(60),
        per_token: Some(200),
        window: Duration::from_secs(1),
        penalty: Duration::from_secs(30),
        retry_after_header: false,
    };
    let e = start(c).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyairtable_check.py");
    let url = e.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").args([script, &url, TOKEN, BASE]).output()
    })
    .await
    .expect("join")
    .expect("python3 must be installed (CI installs it with pyairtable)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pyairtable check failed (install it with `pip install pyairtable` if missing):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");
    let stats = e.admin().stats();
    let log = e.admin().request_log();
    let first: Vec<(&str, usize)> = log.iter().take(3).map(|r| (r.kind, r.records)).collect();
    assert_eq!(first, [("create", 10), ("create", 10), ("create", 5)], "25 records in 3 requests");
    assert_eq!(stats.max_records_per_write, 10);
    assert!(stats.rate_limited >= 1);
}
