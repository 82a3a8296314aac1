use chrono::{Duration, Utc};
use serde_json::json;
use testkit::{
    api::{auth_config, code, serve, user_with_password, Client, DEMO, PASSWORD},
    cdc::wait_until,
    test_db,
};

#[tokio::test]
async fn login_me_and_failures_that_reveal_nothing() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (c, session) = Client::signed_in(&base, "Demo@Example.com").await;
    assert_eq!(session["token_type"], "Bearer");
    assert!(session["refresh_token"].as_str().is_some_and(|t| t.len() >= 40));
    assert_eq!(session["user"]["email"], "demo@example.com");
    let (s, me) = c.get("/api/auth/me").await;
    assert_eq!(
        (s.as_u16(), me["email"].clone(), me["has_password"].clone()),
        (200, json!("demo@example.com"), json!(true))
    );
    assert!(me.get("password_hash").is_none());

    let anon = Client::new(&base);
    for body in [
        json!({ "email": "demo@example.com", "password": "wrong password" }),
        json!({ "email": "nobody@example.com", "password": PASSWORD }),
    ] {
        let (s, b) = anon.post("/api/auth/login", body).await;
        assert_eq!((s.as_u16(), code(&b)), (401, "unauthenticated"));
        assert_eq!(b["error"]["message"], "invalid email or password", "the same answer for both");
    }
    let (s, b) = anon.get("/api/auth/me").await;
    assert_eq!((s.as_u16(), code(&b)), (401, "unauthenticated"));
    // A disabled user cannot sign in.
    sqlx::query("UPDATE users SET status = 'disabled' WHERE email = 'demo@example.com'")
        .execute(&db.pool)
        .await
        .expect("disable");
    let (s, _) = anon
        .post("/api/auth/login", json!({ "email": "demo@example.com", "password": PASSWORD }))
        .await;
    assert_eq!(s.as_u16(), 401);
}

#[tokio::test]
async fn an_expired_or_forged_access_token_is_refused() {
    let db = test_db().await;
    let user = user_with_password(&db.pool, "a@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (expired, _) = api::auth::jwt::issue_at(
        &auth_config(),
        user,
        schema::users::Role::User,
        Utc::now() - Duration::hours(1),
    )
    .expect("token");
    let mut c = Client::new(&base);
    c.token = Some(expired);
    let (s, b) = c.get("/api/auth/me").await;
    assert_eq!(
        (s.as_u16(), b["error"]["message"].as_str()),
        (401, Some("the access token expired; refresh it"))
    );
    let other = api::AuthConfig::new("another-secret-0123456789-abcdefghijKLMN").expect("secret");
    let (forged, _) =
        api::auth::jwt::issue(&other, user, schema::users::Role::Admin).expect("token");
    c.token = Some(forged);
    assert_eq!(c.get("/api/auth/me").await.0.as_u16(), 401);
    c.token = Some("not.a.jwt".into());
    assert_eq!(c.get("/api/auth/me").await.0.as_u16(), 401);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let db = test_db().await;
    user_with_password(&db.pool, "a@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (_, first) = Client::signed_in(&base, "a@example.com").await;
    let anon = Client::new(&base);
    let r1 = first["refresh_token"].as_str().expect("refresh").to_owned();
    let (s, second) = anon.post("/api/auth/refresh", json!({ "refresh_token": r1 })).await;
    assert_eq!(s.as_u16(), 200, "{second}");
    let r2 = second["refresh_token"].as_str().expect("refresh").to_owned();
    assert_ne!(r1, r2, "rotated");
    let mut c = Client::new(&base);
    c.token = second["access_token"].as_str().map(str::to_owned);
    assert_eq!(c.get("/api/auth/me").await.0.as_u16(), 200);

    // The old token again: refused, and the whole family with it.
    let (s, b) = anon.post("/api/auth/refresh", json!({ "refresh_token": r1 })).await;
    assert_eq!((s.as_u16(), code(&b)), (401, "unauthenticated"));
    let (s, _) = anon.post("/api/auth/refresh", json!({ "refresh_token": r2 })).await;
    assert_eq!(s.as_u16(), 401, "the newest token of a reused family is revoked too");
    let (s, _) = anon.post("/api/auth/refresh", json!({ "refresh_token": "made-up" })).await;
    assert_eq!(s.as_u16(), 401);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = convert_to($1, 'UTF8')",
    )
    .bind(&r2)
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(stored, 0, "tokens are stored hashed only");
}

#[tokio::test]
async fn a_provisioned_user_sets_a_first_password_once_with_an_invitation() {
    let db = test_db().await;
    user_with_password(&db.pool, "coach@example.com", "coach").await;
    user_with_password(&db.pool, "plain@example.com", "user").await;
    let new_user: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO users (email, name) VALUES ('new@example.com', 'Nieuw') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .expect("user");
    let base = serve(&db.url()).await;
    let anon = Client::new(&base);

    // An email address alone is never enough.
    let (s, _) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": "new@example.com", "code": "guess", "password": "a new password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 401);
    let (s, _) = anon
        .post(
            "/api/auth/set-password",
            json!({ "current_password": "x", "password": "a new password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 401);

    let (plain, _) = Client::signed_in(&base, "plain@example.com").await;
    let (s, b) = plain.post("/api/auth/invitations", json!({ "user_id": new_user })).await;
    assert_eq!((s.as_u16(), code(&b)), (403, "forbidden"));
    let (coach, _) = Client::signed_in(&base, "coach@example.com").await;
    let (s, b) =
        coach.post("/api/auth/invitations", json!({ "user_id": uuid::Uuid::new_v4() })).await;
    assert_eq!(s.as_u16(), 404, "{b}");
    let (s, invitation) = coach.post("/api/auth/invitations", json!({ "user_id": new_user })).await;
    assert_eq!(s.as_u16(), 201, "{invitation}");
    let code_ = invitation["code"].as_str().expect("code").to_owned();

    let (s, b) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": "new@example.com", "code": code_, "password": "short" }),
        )
        .await;
    assert_eq!((s.as_u16(), code(&b)), (422, "validation_failed"));
    let (s, _) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": "plain@example.com", "code": code_, "password": "a new password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 401, "the code belongs to one user");
    let (s, _) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": "new@example.com", "code": code_, "password": "a new password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 204);
    let (s, _) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": "new@example.com", "code": code_, "password": "another password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 401, "exactly once");
    let (s, session) = anon
        .post(
            "/api/auth/login",
            json!({ "email": "new@example.com", "password": "a new password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 200, "{session}");

    // Signed in, the current password changes it.
    let mut me = Client::new(&base);
    me.token = session["access_token"].as_str().map(str::to_owned);
    let (s, _) = me
        .post(
            "/api/auth/set-password",
            json!({ "current_password": "wrong", "password": "third password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 401);
    let (s, _) = me
        .post(
            "/api/auth/set-password",
            json!({ "current_password": "a new password!", "password": "third password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 204);
    let (s, _) =
        anon.post("/api/auth/refresh", json!({ "refresh_token": session["refresh_token"] })).await;
    assert_eq!(s.as_u16(), 401, "a password change revokes refresh tokens");
}

/// Disabled means disabled: a token issued before the user was disabled (or deleted) stops
/// working within seconds, on reads and on writes, and works again when re-enabled.
#[tokio::test]
async fn a_disabled_or_deleted_user_loses_access_at_once() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let gone = user_with_password(&db.pool, "gone@example.com", "user").await;
    let hard = user_with_password(&db.pool, "hard@example.com", "user").await;
    let base = serve(&db.url()).await;
    let (c, _) = Client::signed_in(&base, "demo@example.com").await;
    let (g, _) = Client::signed_in(&base, "gone@example.com").await;
    let write = || {
        c.post(
            "/api/habit-usage",
            json!({ "method_id": "00000000-0000-4000-8000-000000000403", "date": "2030-01-01" }),
        )
    };
    assert_eq!(c.get("/api/auth/me").await.0.as_u16(), 200);

    // As the inbound sync applies it from Airtable.
    sqlx::query("UPDATE users SET status = 'disabled' WHERE email = 'demo@example.com'")
        .execute(&db.pool)
        .await
        .expect("disable");
    wait_until(std::time::Duration::from_secs(5), "the token is refused", || async {
        c.get("/api/auth/me").await.0.as_u16() == 401
    })
    .await;
    let (s, b) = c.get("/api/auth/me").await;
    assert_eq!(
        (s.as_u16(), code(&b), b["error"]["message"].clone()),
        (401, "unauthenticated", json!("this account is disabled"))
    );
    let (s, _) = write().await;
    assert_eq!(s.as_u16(), 401, "a write is refused too");
    let usage: i64 =
        sqlx::query_scalar("SELECT count(*) FROM habit_usage WHERE date = '2030-01-01'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(usage, 0);

    sqlx::query("UPDATE users SET status = 'active' WHERE email = 'demo@example.com'")
        .execute(&db.pool)
        .await
        .expect("enable");
    wait_until(std::time::Duration::from_secs(5), "the token works again", || async {
        c.get("/api/auth/me").await.0.as_u16() == 200
    })
    .await;
    assert_eq!(write().await.0.as_u16(), 201);

    // Soft-deleted, then deleted outright: refused either way.
    assert_eq!(g.get("/api/auth/me").await.0.as_u16(), 200);
    sqlx::query("UPDATE users SET deleted_at = now() WHERE id = $1")
        .bind(gone)
        .execute(&db.pool)
        .await
        .expect("soft delete");
    wait_until(std::time::Duration::from_secs(5), "a soft-deleted user is refused", || async {
        g.get("/api/auth/me").await.0.as_u16() == 401
    })
    .await;
    let (h, _) = Client::signed_in(&base, "hard@example.com").await;
    assert_eq!(h.get("/api/auth/me").await.0.as_u16(), 200);
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(hard)
        .execute(&db.pool)
        .await
        .expect("delete");
    wait_until(std::time::Duration::from_secs(5), "a deleted user is refused", || async {
        h.get("/api/auth/me").await.0.as_u16() == 401
    })
    .await;
    // A new server reads the set whole at start.
    let again = serve(&db.url()).await;
    sqlx::query("UPDATE users SET status = 'disabled' WHERE email = 'demo@example.com'")
        .execute(&db.pool)
        .await
        .expect("disable");
    let mut late = Client::new(&again);
    late.token = c.token.clone();
    wait_until(std::time::Duration::from_secs(5), "refused by a second server", || async {
        late.get("/api/auth/me").await.0.as_u16() == 401
    })
    .await;
}
