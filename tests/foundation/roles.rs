//! Least privilege: the grants follow field ownership, and each login can do what it must and
//! is refused what it must not.

use schema::registry::{Owner, TableKind, TABLES};
use sqlx::{Connection, PgConnection};
use testkit::{test_db, TestDb};

async fn has(db: &TestDb, role: &str, table: &str, column: &str, privilege: &str) -> bool {
    sqlx::query_scalar("SELECT has_column_privilege($1, $2, $3, $4)")
        .bind(role)
        .bind(table)
        .bind(column)
        .bind(privilege)
        .fetch_one(&db.pool)
        .await
        .expect("has_column_privilege")
}

#[tokio::test]
async fn column_grants_follow_the_registry_ownership() {
    let db = test_db().await;
    for table in TABLES {
        for column in table.columns {
            let (t, c) = (table.name, column.name);
            let api_writes = has(&db, "coach_api", t, c, "UPDATE").await;
            let sync_writes = has(&db, "coach_sync", t, c, "UPDATE").await;
            match (table.kind, column.owner) {
                (TableKind::Private, _) => {
                    assert!(api_writes, "api must update its own {t}.{c}");
                    assert!(!sync_writes, "sync may not update {t}.{c}");
                    assert!(
                        !has(&db, "coach_sync", t, c, "SELECT").await,
                        "sync may not read {t}.{c}"
                    );
                    continue;
                }
                (TableKind::Sync, _) => {
                    assert!(!api_writes, "api may not update sync table {t}.{c}");
                }
                (_, Owner::Airtable) => {
                    assert!(sync_writes, "sync must update Airtable-owned {t}.{c}");
                    assert!(!api_writes, "api may not update Airtable-owned {t}.{c}");
                }
                (_, Owner::Postgres) => {
                    assert!(!sync_writes, "sync may not update Postgres-owned {t}.{c}");
                }
            }
            if table.kind == TableKind::Operational {
                assert!(api_writes, "api must update operational {t}.{c}");
            }
            if table.kind != TableKind::Sync {
                assert!(has(&db, "coach_api", t, c, "SELECT").await, "api reads {t}.{c}");
                assert!(has(&db, "coach_sync", t, c, "SELECT").await, "sync reads {t}.{c}");
            }
        }
    }
}

async fn login(db: &TestDb, user: &str) -> PgConnection {
    PgConnection::connect(&db.url_as(user)).await.expect("login")
}

async fn denied(conn: &mut PgConnection, sql: &str) -> bool {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Err(sqlx::Error::Database(e)) => e.code().as_deref() == Some("42501"),
        other => panic!("expected a permission error for {sql:?}, got {other:?}"),
    }
}

async fn allowed(conn: &mut PgConnection, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sql).execute(&mut *conn).await {
        panic!("{sql:?} must be allowed: {e}");
    }
}

const USER: &str = "00000000-0000-4000-8000-0000000000aa";
const GOAL: &str = "00000000-0000-4000-8000-0000000000bb";

#[tokio::test]
async fn the_api_role_writes_operational_data_and_nothing_else() {
    let db = test_db().await;
    sqlx::raw_sql(&format!(
        "INSERT INTO users (id, email) VALUES ('{USER}', 'a@example.com');
         INSERT INTO goals (id, name) VALUES ('{GOAL}', 'g');"
    ))
    .execute(&db.pool)
    .await
    .expect("seed");
    let mut api = login(&db, "test_api").await;

    allowed(&mut api, "SELECT * FROM methods, goals LIMIT 1").await;
    allowed(&mut api, &format!(
        "INSERT INTO programs (user_id, start_date, end_date, goal_ids) VALUES ('{USER}', '2026-01-01', '2026-02-01', '{{{GOAL}}}')"
    )).await;
    allowed(&mut api, &format!("UPDATE users SET bonus_points = bonus_points + 5, password_hash = 'x' WHERE id = '{USER}'")).await;
    allowed(&mut api, "INSERT INTO sync_outbox (kind, table_name) VALUES ('progress', 'programs')")
        .await;
    allowed(&mut api, "SELECT * FROM program_progress").await;

    assert!(denied(&mut api, "DROP TABLE programs").await);
    assert!(denied(&mut api, "ALTER TABLE programs ADD COLUMN x int").await);
    assert!(denied(&mut api, "CREATE TABLE evil (id int)").await);
    assert!(
        denied(&mut api, &format!("UPDATE users SET email = 'b@example.com' WHERE id = '{USER}'"))
            .await
    );
    assert!(denied(&mut api, "INSERT INTO users (email) VALUES ('c@example.com')").await);
    assert!(denied(&mut api, "INSERT INTO methods (name) VALUES ('m')").await);
    assert!(denied(&mut api, "UPDATE personal_goals SET coach_feedback = 'x'").await);
    for sync_table in
        ["sync_dead_letter", "sync_checkpoint", "sync_inbox_events", "airtable_id_map"]
    {
        assert!(denied(&mut api, &format!("DELETE FROM {sync_table}")).await, "{sync_table}");
        assert!(denied(&mut api, &format!("SELECT * FROM {sync_table}")).await, "{sync_table}");
    }
    assert!(denied(&mut api, "SELECT * FROM sync_outbox").await);
}

#[tokio::test]
async fn the_sync_role_writes_airtable_owned_data_and_sync_tables_only() {
    let db = test_db().await;
    sqlx::raw_sql(&format!("INSERT INTO users (id, email) VALUES ('{USER}', 'a@example.com')"))
        .execute(&db.pool)
        .await
        .expect("seed");
    let mut sync = login(&db, "test_sync").await;

    allowed(
        &mut sync,
        "INSERT INTO goals (name) VALUES ('g'); INSERT INTO methods (name) VALUES ('m')",
    )
    .await;
    allowed(&mut sync, "INSERT INTO users (email, name) VALUES ('new@example.com', 'New')").await;
    allowed(
        &mut sync,
        &format!(
            "UPDATE users SET email = 'b@example.com', status = 'disabled' WHERE id = '{USER}'"
        ),
    )
    .await;
    allowed(&mut sync, "INSERT INTO sync_checkpoint (name, value) VALUES ('x', '{}')").await;
    allowed(&mut sync, "INSERT INTO sync_dead_letter (direction, operation, payload, error_code, error_message) VALUES ('inbound', 'upsert', '{}', 'E', 'e')").await;
    allowed(&mut sync, "SELECT * FROM sync_outbox; DELETE FROM sync_outbox").await;
    allowed(&mut sync, "SELECT * FROM programs, habit_usage LIMIT 1").await;

    assert!(
        denied(&mut sync, &format!("UPDATE users SET password_hash = 'x' WHERE id = '{USER}'"))
            .await
    );
    assert!(
        denied(&mut sync, &format!("UPDATE users SET bonus_points = 1 WHERE id = '{USER}'")).await
    );
    assert!(denied(&mut sync, "DELETE FROM programs").await);
    assert!(denied(&mut sync, "UPDATE personal_goals SET name = 'x'").await);
    assert!(denied(&mut sync, "DROP TABLE goals").await);

    let replication: bool =
        sqlx::query_scalar("SELECT rolreplication FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut sync)
            .await
            .expect("rolreplication");
    assert!(replication);
    // Echo suppression needs the replication-origin functions.
    allowed(&mut sync, "SELECT pg_replication_origin_create('coach_test_origin'); SELECT pg_replication_origin_session_setup('coach_test_origin'); SELECT pg_replication_origin_session_reset()").await;
}

#[tokio::test]
async fn the_migrator_role_owns_the_schema_and_may_change_it() {
    let db = test_db().await;
    let not_owned: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace
         AND relkind IN ('r', 'v') AND relname <> '_sqlx_migrations'
         AND pg_get_userbyid(relowner) <> 'coach_migrator'",
    )
    .fetch_all(&db.pool)
    .await
    .expect("owners");
    assert!(not_owned.is_empty(), "not owned by coach_migrator: {not_owned:?}");

    let mut migrator = login(&db, "test_migrator").await;
    allowed(&mut migrator, "BEGIN; ALTER TABLE programs ADD COLUMN scratch int; CREATE TABLE scratch (id int); DROP TABLE scratch; ROLLBACK").await;
}
