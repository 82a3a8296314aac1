use reqwest::Method;
use serde_json::json;
use testkit::{
    api::{code, serve, user_with_password, Client, DEMO},
    test_db,
};

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let doc = serde_json::to_value(api::openapi()).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    let expected: &[(&str, &[&str])] = &[
        ("/api/auth/login", &["post"]),
        ("/api/auth/me", &["get"]),
        ("/api/auth/refresh", &["post"]),
        ("/api/auth/set-password", &["post"]),
        ("/api/auth/invitations", &["post"]),
        ("/api/programs", &["get", "post"]),
        ("/api/programs/{id}", &["get", "patch", "delete"]),
        ("/api/programs/{id}/schedule", &["get"]),
        ("/api/programs/{id}/schedule/{planning_id}", &["get", "patch"]),
        ("/api/programs/{id}/methods", &["get"]),
        ("/api/habit-usage", &["get", "post", "delete"]),
        ("/api/method-usage", &["post", "patch"]),
        ("/api/method-usage/by-program", &["get"]),
        ("/api/personal-goal-usage", &["get", "post"]),
        ("/api/overtuiging-usage", &["get", "post"]),
        ("/api/personal-goals", &["get", "post"]),
        ("/api/personal-goals/{id}", &["patch", "delete"]),
        ("/api/persoonlijke-overtuigingen", &["get", "post"]),
        ("/api/methods", &["get"]),
        ("/api/methods/{id}", &["get"]),
        ("/api/goals", &["get"]),
        ("/api/overtuigingen", &["get"]),
        ("/api/companies/lookup", &["get"]),
        ("/api/rewards", &["get"]),
        ("/api/health", &["get"]),
        ("/api/ready", &["get"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is missing from the OpenAPI document"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{m} {path} is missing");
        }
    }
    assert_eq!(
        paths.len(),
        expected.len(),
        "no undocumented extras: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    // The served document is the same, and every documented route is routed.
    let db = test_db().await;
    let base = serve(&db.url()).await;
    let anon = Client::new(&base);
    let (s, served) = anon.get("/api/openapi.json").await;
    assert_eq!(
        (s.as_u16(), served["paths"].as_object().map(|p| p.len())),
        (200, Some(expected.len()))
    );
    for (path, methods) in expected {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{planning_id}", &uuid::Uuid::new_v4().to_string());
        for m in *methods {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
            let resp =
                anon.http.request(method, format!("{base}{concrete}")).send().await.expect("send");
            assert_ne!(resp.status().as_u16(), 405, "{m} {path} is not routed");
        }
    }
}

#[tokio::test]
async fn errors_have_one_shape_and_every_response_a_request_id() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (c, _) = Client::signed_in(&base, "demo@example.com").await;
    let http = reqwest::Client::new();

    let resp = http
        .get(format!("{base}/api/health"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .expect("send");
    assert_eq!(
        resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("trace-me-123")
    );
    let resp = http.get(format!("{base}/api/health")).send().await.expect("send");
    assert!(
        resp.headers().get("x-request-id").is_some_and(|v| v.len() >= 32),
        "generated when absent"
    );

    let token = c.token.clone().expect("token");
    let bad_json = http
        .post(format!("{base}/api/programs"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(bad_json.status().as_u16(), 400);
    let body: serde_json::Value = bad_json.json().await.expect("json");
    assert_eq!(code(&body), "bad_request");
    let (s, body) = c
        .post(
            "/api/programs",
            json!({ "start_date": "2040-01-01", "end_date": "2040-02-01", "colour": "red" }),
        )
        .await;
    assert_eq!((s.as_u16(), code(&body)), (422, "validation_failed"), "unknown fields are refused");
    assert!(body["error"]["details"].is_object());
    let huge = "x".repeat(100 * 1024);
    let (s, body) = c.post("/api/personal-goals", json!({ "name": huge })).await;
    assert_eq!((s.as_u16(), code(&body)), (413, "too_large"));
    let (s, body) = c.get("/api/no/such/route").await;
    assert_eq!((s.as_u16(), code(&body)), (404, "not_found"));
    // Database failures never leak SQL.
    let (s, body) = c.post("/api/programs", json!({ "start_date": "2040-01-01", "end_date": "2040-02-01", "method_ids": [uuid::Uuid::new_v4()] })).await;
    assert_eq!((s.as_u16(), code(&body)), (422, "invalid_reference"));
    assert!(
        !body.to_string().contains("INSERT") && !body.to_string().contains("violates"),
        "{body}"
    );

    let ready = http.get(format!("{base}/api/ready")).send().await.expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
}

#[tokio::test]
async fn a_write_is_one_transaction_and_nothing_of_a_failed_one_stays() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (c, _) = Client::signed_in(&base, "demo@example.com").await;
    let count = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool).await.expect("count") }
    };
    const USAGE: &str = "SELECT count(*) FROM overtuiging_usage";
    const POINTS: &str = "SELECT bonus_points::bigint FROM users WHERE email = 'demo@example.com'";
    let (usage0, points0) = (count(USAGE).await, count(POINTS).await);
    let today = chrono::Utc::now().date_naive();
    // The usage row and the points it earns: two writes, one transaction.
    let (s, _) = c
        .post(
            "/api/overtuiging-usage",
            json!({ "overtuiging_id": "00000000-0000-4000-8000-000000000501", "date": today }),
        )
        .await;
    assert_eq!(s.as_u16(), 201);
    let (usage1, points1) = (count(USAGE).await, count(POINTS).await);
    assert_eq!(usage1, usage0 + 1);
    assert!(points1 > points0, "a new day earns points");

    // Make the points refuse: the usage written before them in the transaction must vanish too.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'points down'; END $$;
         CREATE TRIGGER refuse BEFORE UPDATE OF bonus_points ON users FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&db.pool)
    .await
    .expect("trigger");
    let yesterday = today.pred_opt().expect("yesterday");
    let (s, body) = c
        .post(
            "/api/overtuiging-usage",
            json!({ "overtuiging_id": "00000000-0000-4000-8000-000000000501", "date": yesterday }),
        )
        .await;
    assert_eq!((s.as_u16(), code(&body)), (500, "internal"));
    assert!(!body.to_string().contains("points down"), "no database text leaks: {body}");
    assert_eq!(
        (count(USAGE).await, count(POINTS).await),
        (usage1, points1),
        "nothing of the failed request stays"
    );
}

/// Metrics counted by an API process of the test's own (the in-process recorder is shared by
/// every test): exactly the requests this test made.
#[tokio::test]
async fn the_api_counts_each_request_by_route_method_and_status() {
    let db = test_db().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _api = tokio::process::Command::new(testkit::cargo_bin("api"))
        .env("DATABASE_URL", db.url())
        .env("API_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", "k3Yq8vN2xP7mR4tW9zB6cF1hJ5dL0sGaQeUiOoXy")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn api");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    testkit::cdc::wait_until(std::time::Duration::from_secs(30), "the API answers", || async {
        http.get(format!("{base}/api/health")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    for _ in 0..3 {
        let r = http
            .post(format!("{base}/api/auth/login"))
            .json(&json!({ "email": "nobody@example.com", "password": "wrong-password" }))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status().as_u16(), 401);
    }
    let r = http.get(format!("{base}/api/programs")).send().await.expect("programs");
    assert_eq!(r.status().as_u16(), 401);
    let ready = http.get(format!("{base}/api/ready")).send().await.expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
    let text = testkit::metrics_text(&http, &format!("{base}/metrics")).await;
    let count = |s: &str| testkit::series(&text, s);
    assert_eq!(
        count("http_requests_total{route=\"/api/auth/login\",method=\"POST\",status=\"401\"}"),
        3.0,
        "{text}"
    );
    assert_eq!(
        count("http_requests_total{route=\"/api/programs\",method=\"GET\",status=\"401\"}"),
        1.0,
        "{text}"
    );
    assert!(
        count("http_requests_total{route=\"/api/health\",method=\"GET\",status=\"200\"}") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket{route=\"/api/auth/login\""),
        "{text}"
    );
    assert!(text.contains("db_pool_connections"), "{text}");
}
