//! The first admin and invitations by email: an operator bootstraps the first password with
//! `cdc admin invite EMAIL`; coaches and admins invite by email too.

use serde_json::json;
use std::time::Duration;
use testkit::{
    api::{code, serve, user_with_password, Client},
    cdc_output, test_db,
};

async fn invite(url: &str, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = ["admin", "invite"].into_iter().chain(args.iter().copied()).collect();
    cdc_output(&args, &[("DATABASE_URL", url)]).await
}

fn code_line(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("code"))
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|| panic!("no code in:\n{out}"))
}

#[tokio::test]
async fn the_first_admin_gets_a_password_from_cdc_admin_invite() {
    let db = test_db().await;
    sqlx::query("INSERT INTO users (email, role) VALUES ('Boss@Example.com', 'admin')")
        .execute(&db.pool)
        .await
        .expect("user");
    let base = serve(&db.url()).await;
    let anon = Client::new(&base);

    let (ok, out, err) = invite(&db.url(), &["boss@example.COM"]).await;
    assert!(ok, "{out}\n{err}");
    let invitation = code_line(&out);
    let (s, _) = anon
        .post("/api/auth/set-password", json!({ "email": "boss@example.com", "code": invitation, "password": "the first admin!" }))
        .await;
    assert_eq!(s.as_u16(), 204);
    let (admin, session) =
        Client::signed_in_with(&base, "boss@example.com", "the first admin!").await;
    assert_eq!(session["user"]["role"], "admin");
    let (s, _) = anon
        .post("/api/auth/set-password", json!({ "email": "boss@example.com", "code": invitation, "password": "once more please" }))
        .await;
    assert_eq!(s.as_u16(), 401, "the code works once");

    // The first admin now invites others, by email.
    sqlx::query("INSERT INTO users (email) VALUES ('new@example.com')")
        .execute(&db.pool)
        .await
        .expect("user");
    let (s, b) = admin.post("/api/auth/invitations", json!({ "email": "NEW@example.com" })).await;
    assert_eq!(s.as_u16(), 201, "{b}");
    let (s, _) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": "new@example.com", "code": b["code"], "password": "a new password!" }),
        )
        .await;
    assert_eq!(s.as_u16(), 204);
    let (s, b) =
        admin.post("/api/auth/invitations", json!({ "email": "nobody@example.com" })).await;
    assert_eq!((s.as_u16(), code(&b)), (404, "not_found"));
    let (s, b) = admin
        .post(
            "/api/auth/invitations",
            json!({ "email": "new@example.com", "user_id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!((s.as_u16(), code(&b)), (422, "validation_failed"), "email or user_id, not both");
    let (s, b) = admin.post("/api/auth/invitations", json!({})).await;
    assert_eq!((s.as_u16(), code(&b)), (422, "validation_failed"));
    user_with_password(&db.pool, "plain@example.com", "user").await;
    let (plain, _) = Client::signed_in(&base, "plain@example.com").await;
    let (s, _) = plain.post("/api/auth/invitations", json!({ "email": "new@example.com" })).await;
    assert_eq!(s.as_u16(), 403, "only coaches and admins invite");
}

#[tokio::test]
async fn cdc_admin_invite_refuses_an_unknown_email_and_asks_the_daemon_first() {
    let db = test_db().await;
    // Nobody answers: refused, with the hint, and nothing stored.
    let (ok, _, err) = invite(&db.url(), &["ghost@example.com", "--wait", "1"]).await;
    assert!(!ok);
    assert!(
        err.contains("no user with email ghost@example.com in Postgres")
            && err.contains("Airtable"),
        "{err}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM password_invitations")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);

    // A daemon stand-in: answers the lookup by writing the user, as `cdc run` does.
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool).await.expect("listen");
    listener.listen(schema::channels::USER_LOOKUP).await.expect("listen");
    let pool = db.pool.clone();
    let daemon = tokio::spawn(async move {
        let asked = listener.recv().await.expect("a lookup");
        let email = asked.payload().to_owned();
        sqlx::query("INSERT INTO users (email, role) VALUES ($1, 'coach')")
            .bind(&email)
            .execute(&pool)
            .await
            .expect("user");
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(schema::channels::USER_SYNCED)
            .bind(&email)
            .execute(&pool)
            .await
            .expect("notify");
        email
    });
    let (ok, out, err) = invite(&db.url(), &["fresh@example.com", "--wait", "20"]).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), daemon)
            .await
            .expect("answered")
            .expect("join"),
        "fresh@example.com"
    );
    assert!(!code_line(&out).is_empty());
    let (ok, _, err) = invite(&db.url(), &["fresh@example.com", "--valid-hours", "0"]).await;
    assert!(!ok && err.contains("--valid-hours"), "{err}");
}
