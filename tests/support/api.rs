//! The API running against a test database, and a client that signs in.

use api::{Application, AuthConfig, Config};
use reqwest::{Method, StatusCode};
use schema::postgres::PgConfig;
use serde_json::{json, Value};

pub const SECRET: &str = "k3J9xQ2vLp8ZrT5wYb1NcH7mFd4sGa6E-test-only";
pub const DEMO: &str = include_str!("../stack/demo.sql");
pub const DEMO_USER: &str = "00000000-0000-4000-8000-000000000701";
pub const PASSWORD: &str = "correct horse battery";

pub fn auth_config() -> AuthConfig {
    AuthConfig::new(SECRET).expect("secret")
}

/// Starts the API on `url` (read-through off: no daemon answers); returns its base URL.
pub async fn serve(url: &str) -> String {
    serve_with(url, |c| c.read_through_wait = std::time::Duration::ZERO).await
}

/// Starts the API on `url` with its config edited by `tweak`; returns its base URL.
pub async fn serve_with(url: &str, tweak: impl FnOnce(&mut Config)) -> String {
    let mut config = Config::new(
        "127.0.0.1:0".parse().expect("addr"),
        PgConfig::new(url, "api-test"),
        auth_config(),
    );
    tweak(&mut config);
    let app = Application::build(config).await.expect("api starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// Gives `email`'s user (created if missing) the test password; returns the user id.
pub async fn user_with_password(pool: &sqlx::PgPool, email: &str, role: &str) -> uuid::Uuid {
    let hash = api::auth::password::hash(PASSWORD.into()).await.expect("hash");
    sqlx::query_scalar(
        "INSERT INTO users (email, name, role, password_hash, password_set_at) VALUES ($1, $1, $2, $3, now())
         ON CONFLICT (lower(email)) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role RETURNING id",
    )
    .bind(email)
    .bind(role)
    .bind(hash)
    .fetch_one(pool)
    .await
    .expect("user")
}

/// A client of the API, signed in or not.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self { http: reqwest::Client::new(), base: base.to_owned(), token: None }
    }

    pub async fn signed_in(base: &str, email: &str) -> (Self, Value) {
        Self::signed_in_with(base, email, PASSWORD).await
    }

    pub async fn signed_in_with(base: &str, email: &str, password: &str) -> (Self, Value) {
        let mut c = Self::new(base);
        let (status, session) = c
            .call(
                Method::POST,
                "/api/auth/login",
                Some(json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {session}");
        c.token = session["access_token"].as_str().map(str::to_owned);
        (c, session)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }
}

/// The stable error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
