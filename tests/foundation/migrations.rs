use schema::postgres::migrate::{self, MigrationError, MIGRATOR};
use std::process::Command;
use testkit::{cargo_bin, empty_db};

/// Everything DDL can change, as text: comparing it before and after shows "no change".
async fn catalog_fingerprint(pool: &sqlx::PgPool) -> String {
    sqlx::query_scalar(
        r#"
        SELECT string_agg(x, E'\n' ORDER BY x) FROM (
            SELECT format('rel %s %s %s', c.relname, c.relkind, pg_get_userbyid(c.relowner))
            FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
            UNION ALL
            SELECT format('col %s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                          a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT format('con %s %s', conname, pg_get_constraintdef(oid))
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
            UNION ALL
            SELECT format('acl %s %s', c.relname, c.relacl::text)
            FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
            UNION ALL
            SELECT format('rows %s', count(*)) FROM _sqlx_migrations
        ) s(x)
        "#,
    )
    .fetch_one(pool)
    .await
    .expect("fingerprint")
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_a_second_run_changes_nothing() {
    let db = empty_db().await;
    assert!(matches!(migrate::ensure_current(&db.pool).await, Err(MigrationError::Empty)));

    let applied = migrate::run(&db.pool).await.expect("first run");
    assert_eq!(applied.len(), MIGRATOR.iter().count());
    migrate::ensure_current(&db.pool).await.expect("current after first run");
    let before = catalog_fingerprint(&db.pool).await;

    let applied = migrate::run(&db.pool).await.expect("second run");
    assert!(applied.is_empty(), "second run applied {applied:?}");
    assert_eq!(before, catalog_fingerprint(&db.pool).await);
    assert!(migrate::status(&db.pool).await.expect("status").iter().all(|m| m.applied));
}

#[tokio::test]
async fn a_database_behind_modified_or_dirty_is_refused_with_the_fix() {
    let db = empty_db().await;
    migrate::run(&db.pool).await.expect("migrate");
    let last = MIGRATOR.iter().last().expect("migrations").version;

    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(last)
        .execute(&db.pool)
        .await
        .expect("delete");
    let e = migrate::ensure_current(&db.pool).await.expect_err("behind");
    assert!(matches!(e, MigrationError::Behind { .. }), "{e}");
    assert!(e.to_string().contains("run `cdc migrate`"), "{e}");

    let db = empty_db().await;
    migrate::run(&db.pool).await.expect("migrate");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = $1")
        .bind(last)
        .execute(&db.pool)
        .await
        .expect("tamper");
    assert!(matches!(
        migrate::ensure_current(&db.pool).await,
        Err(MigrationError::Modified { .. })
    ));

    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = $1")
        .bind(last)
        .execute(&db.pool)
        .await
        .expect("dirty");
    assert!(matches!(migrate::ensure_current(&db.pool).await, Err(MigrationError::Dirty { .. })));

    let db = empty_db().await;
    migrate::run(&db.pool).await.expect("migrate");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from the future', true, '\\x00', 0)",
    )
    .execute(&db.pool)
    .await
    .expect("future");
    let e = migrate::ensure_current(&db.pool).await.expect_err("unknown");
    assert!(matches!(e, MigrationError::Unknown { version: 99999 }), "{e}");
}

#[tokio::test]
async fn cdc_migrate_creates_the_schema_and_is_a_no_op_the_second_time() {
    let db = empty_db().await;
    let run = |args: &[&str]| {
        Command::new(cargo_bin("cdc"))
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("LOG_FORMAT", "text")
            .output()
            .expect("run cdc")
    };

    let check = run(&["migrate", "--check"]);
    assert!(!check.status.success(), "--check on an empty database must fail");
    assert!(String::from_utf8_lossy(&check.stderr).contains("cdc migrate"));

    let first = run(&["migrate"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let out = String::from_utf8_lossy(&first.stdout);
    assert_eq!(out.matches("applied ").count(), MIGRATOR.iter().count(), "{out}");
    let before = catalog_fingerprint(&db.pool).await;

    let second = run(&["migrate"]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing to apply"));
    assert_eq!(before, catalog_fingerprint(&db.pool).await);

    let check = run(&["migrate", "--check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[tokio::test]
async fn cdc_migrate_without_database_url_names_the_variable() {
    let out = Command::new(cargo_bin("cdc"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run cdc");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL is not set"));
}
