//! schemathesis (PyPI) against the served OpenAPI document, signed in: no 5xx anywhere, and
//! every response matches its schema.

use std::process::Command;
use testkit::{
    api::{serve, user_with_password, Client, DEMO},
    test_db,
};

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (c, _) = Client::signed_in(&base, "demo@example.com").await;
    let token = c.token.clone().expect("token");
    let report = tempfile::tempdir().expect("tmp");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("schemathesis")
            .args(["run", &format!("{base}/api/openapi.json")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", "30", "--seed", "7", "--workers", "2"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .arg("--report-dir")
            .arg(report.path())
            .output()
    })
    .await
    .expect("join")
    .expect("schemathesis must be installed (`pip install schemathesis`; .ci/run does it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a vacuous pass: every documented operation was exercised.
    let operations: usize = serde_json::to_value(api::openapi()).expect("doc")["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert!(
        stdout.contains(&format!("Tested: {operations}")),
        "not every operation was tested:\n{stdout}"
    );
}
