//! The API refuses to start on a database behind the migrations, naming the command to run,
//! and serves readiness once the schema is current.

use api::{Application, Config, StartError};
use schema::postgres::PgConfig;
use testkit::{empty_db, test_db};

pub const TEST_SECRET: &str = "k3J9xQ2vLp8ZrT5wYb1NcH7mFd4sGa6E-test-only";

fn config(url: String) -> Config {
    Config::new(
        "127.0.0.1:0".parse().expect("addr"),
        PgConfig::new(url, "api-test"),
        api::AuthConfig::new(TEST_SECRET).expect("secret"),
    )
}

#[tokio::test]
async fn the_api_refuses_an_unmigrated_database_and_names_the_fix() {
    let db = empty_db().await;
    let err = match Application::build(config(db.url())).await {
        Err(e) => e,
        Ok(_) => panic!("the API started on an empty database"),
    };
    assert!(matches!(err, StartError::Schema(_)), "{err}");
    assert!(err.to_string().contains("run `cdc migrate`"), "{err}");
}

#[tokio::test]
async fn the_api_serves_health_and_readiness_on_a_current_database() {
    let db = test_db().await;
    let app = Application::build(config(db.url())).await.expect("starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped());

    let health = reqwest::get(format!("{base}/api/health")).await.expect("health");
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("{base}/api/ready")).await.expect("ready");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["ready"], true);

    // The schema falls behind while running: readiness says so and names the fix.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&db.pool)
    .await
    .expect("fall behind");
    let ready = reqwest::get(format!("{base}/api/ready")).await.expect("ready");
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.expect("body");
    assert!(body.contains("cdc migrate"), "{body}");
    server.abort();
}
