//! Each database failure maps to its stable kind; nothing of the SQL reaches the message.

use schema::postgres::{self, timed, DbError, DbErrorKind, PgConfig};
use std::time::Duration;
use testkit::test_db;

async fn exec(pool: &sqlx::PgPool, sql: &str) -> Result<(), DbError> {
    timed("test", sqlx::raw_sql(sql).execute(pool)).await.map(|_| ())
}

const USER: &str = "00000000-0000-4000-8000-0000000000aa";

#[tokio::test]
async fn constraint_violations_map_to_their_kinds_and_name_the_constraint() {
    let db = test_db().await;
    exec(&db.pool, &format!(
        "INSERT INTO users (id, email) VALUES ('{USER}', 'a@example.com');
         INSERT INTO programs (user_id, start_date, end_date) VALUES ('{USER}', '2026-01-01', '2026-01-31');"
    ))
    .await
    .expect("seed");

    let cases: &[(&str, DbErrorKind, &str)] = &[
        ("INSERT INTO users (email) VALUES ('A@EXAMPLE.COM')", DbErrorKind::Unique, "users_email_key"),
        (
            "INSERT INTO programs (user_id, start_date, end_date) VALUES ('00000000-0000-4000-8000-000000000000', '2027-01-01', '2027-01-02')",
            DbErrorKind::ForeignKey,
            "programs_user_id_fkey",
        ),
        (
            "INSERT INTO programs (user_id, start_date, end_date, goal_ids) VALUES ('00000000-0000-4000-8000-0000000000aa', '2027-01-01', '2027-01-02', '{00000000-0000-4000-8000-000000000000}')",
            DbErrorKind::ForeignKey,
            "programs_goal_ids_fkey",
        ),
        (
            "INSERT INTO programs (user_id, start_date, end_date) VALUES ('00000000-0000-4000-8000-0000000000aa', '2027-01-02', '2027-01-01')",
            DbErrorKind::Check,
            "programs_dates_check",
        ),
        (
            "INSERT INTO programs (user_id, start_date, end_date) VALUES ('00000000-0000-4000-8000-0000000000aa', '2026-01-15', '2026-02-15')",
            DbErrorKind::Exclusion,
            "programs_no_overlap",
        ),
    ];
    for (sql, kind, constraint) in cases {
        let e = exec(&db.pool, sql).await.expect_err(sql);
        assert_eq!(e.kind(), *kind, "{sql}");
        assert_eq!(e.constraint(), Some(*constraint), "{sql}");
        let shown = e.to_string();
        assert!(!shown.contains("INSERT") && !shown.contains("violates"), "leaks SQL: {shown}");
    }

    let e = exec(&db.pool, "SELECT 'not-a-uuid'::uuid").await.expect_err("cast");
    assert_eq!(e.kind(), DbErrorKind::Check);
    let e = timed("missing", sqlx::query("SELECT 1 WHERE false").fetch_one(&db.pool))
        .await
        .expect_err("none");
    assert_eq!(e.kind(), DbErrorKind::NotFound);
}

#[tokio::test]
async fn a_statement_over_the_query_timeout_maps_to_timeout() {
    let db = test_db().await;
    let mut config = PgConfig::new(db.url(), "errors-test");
    config.query_timeout = Some(Duration::from_millis(50));
    let pool = postgres::connect(&config).await.expect("connect");
    let e = exec(&pool, "SELECT pg_sleep(5)").await.expect_err("timeout");
    assert_eq!(e.kind(), DbErrorKind::Timeout);
    assert_eq!(e.sqlstate(), Some("57014"));
    let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&pool)
        .await
        .expect("app name");
    assert_eq!(name, "errors-test");
}

#[tokio::test]
async fn an_unreachable_server_maps_to_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut config = PgConfig::new(format!("postgres://nobody:secret@127.0.0.1:{port}/none"), "t");
    config.acquire_timeout = Duration::from_secs(2);
    let e = postgres::connect(&config).await.expect_err("unreachable");
    assert_eq!(e.kind(), DbErrorKind::Unavailable);
    assert!(!e.to_string().contains("secret"));
}
