//! The catalog holds what the registry and the hot paths need (asserted on pg_catalog).

use schema::registry::{TABLES, VIEWS};
use sqlx::PgPool;
use testkit::test_db;

async fn columns_of(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_attribute a
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("columns")
}

#[tokio::test]
async fn every_registry_table_exists_with_exactly_its_registered_columns() {
    let db = test_db().await;
    for table in TABLES {
        let mut actual = columns_of(&db.pool, table.name).await;
        assert!(!actual.is_empty(), "table {} is missing", table.name);
        let mut expected: Vec<String> = table.columns.iter().map(|c| c.name.to_string()).collect();
        actual.sort();
        expected.sort();
        assert_eq!(actual, expected, "columns of {}", table.name);
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relnamespace = 'public'::regnamespace
         AND relkind = 'r' AND relname <> '_sqlx_migrations'",
    )
    .fetch_all(&db.pool)
    .await
    .expect("tables");
    for t in &tables {
        assert!(TABLES.iter().any(|r| r.name == t), "table {t} is not in the registry");
    }
    for view in VIEWS {
        let kind: Option<String> =
            sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
                .bind(view)
                .fetch_optional(&db.pool)
                .await
                .expect("view");
        assert_eq!(kind.as_deref(), Some("v"), "view {view}");
    }
}

#[tokio::test]
async fn every_table_has_a_key_and_timestamps_kept_by_the_database() {
    let db = test_db().await;
    for table in TABLES {
        let has_pk: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p')",
        )
        .bind(table.name)
        .fetch_one(&db.pool)
        .await
        .expect("pk");
        assert!(has_pk, "{} has no primary key", table.name);
        if table.column("updated_at").is_some() {
            let trigger: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                 WHERE t.tgrelid = to_regclass($1) AND p.proname = 'set_updated_at')",
            )
            .bind(table.name)
            .fetch_one(&db.pool)
            .await
            .expect("trigger");
            assert!(trigger, "{}.updated_at is not kept by a trigger", table.name);
        }
        if table.column("id").is_some() && !table.name.starts_with("sync_") {
            let uuid: String = sqlx::query_scalar(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = to_regclass($1) AND attname = 'id'",
            )
            .bind(table.name)
            .fetch_one(&db.pool)
            .await
            .expect("id type");
            assert_eq!(uuid, "uuid", "{}.id", table.name);
        }
    }
}

#[tokio::test]
async fn foreign_keys_tie_children_to_parents_and_to_their_owner() {
    let db = test_db().await;
    // (table, columns, referenced table, referenced columns)
    let expected: &[(&str, &str, &str, &str)] = &[
        ("users", "company_id", "companies", "id"),
        ("overtuigingen", "mindset_category_id", "mindset_categories", "id"),
        ("programs", "user_id", "users", "id"),
        ("program_schedule", "program_id,user_id", "programs", "id,user_id"),
        ("program_schedule", "day_of_week_id", "days_of_week", "id"),
        ("method_usage", "user_id", "users", "id"),
        ("method_usage", "method_id", "methods", "id"),
        ("method_usage", "program_id,user_id", "programs", "id,user_id"),
        ("method_usage", "program_schedule_id", "program_schedule", "id"),
        ("habit_usage", "user_id", "users", "id"),
        ("habit_usage", "method_id", "methods", "id"),
        ("personal_goals", "user_id", "users", "id"),
        ("personal_goal_usage", "personal_goal_id,user_id", "personal_goals", "id,user_id"),
        ("overtuiging_usage", "user_id", "users", "id"),
        ("overtuiging_usage", "overtuiging_id", "overtuigingen", "id"),
        ("overtuiging_usage", "program_id,user_id", "programs", "id,user_id"),
        ("persoonlijke_overtuigingen", "user_id", "users", "id"),
        ("persoonlijke_overtuigingen", "program_id,user_id", "programs", "id,user_id"),
    ];
    let actual: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text,
                (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.conkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n),
                c.confrelid::regclass::text,
                (SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM unnest(c.confkey) WITH ORDINALITY k(n, ord)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n)
         FROM pg_constraint c WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace",
    )
    .fetch_all(&db.pool)
    .await
    .expect("fks");
    for (t, cols, rt, rcols) in expected {
        assert!(
            actual.iter().any(|(a, b, c, d)| a == t && b == cols && c == rt && d == rcols),
            "missing foreign key {t}({cols}) -> {rt}({rcols}); have {actual:?}"
        );
    }
}

#[tokio::test]
async fn every_hot_access_path_has_an_index() {
    let db = test_db().await;
    // (table, leading key columns): per user, per user + date range, per program.
    let hot: &[(&str, &[&str])] = &[
        ("users", &["lower(email)"]),
        ("programs", &["user_id", "start_date"]),
        ("program_schedule", &["program_id", "date"]),
        ("program_schedule", &["user_id", "date"]),
        ("method_usage", &["user_id", "used_on"]),
        ("method_usage", &["program_id", "method_id", "used_on"]),
        ("habit_usage", &["user_id", "date"]),
        ("habit_usage", &["user_id", "method_id", "date"]),
        ("personal_goals", &["user_id"]),
        ("personal_goal_usage", &["user_id", "date"]),
        ("personal_goal_usage", &["personal_goal_id", "date"]),
        ("overtuiging_usage", &["user_id", "date"]),
        ("overtuiging_usage", &["program_id"]),
        ("persoonlijke_overtuigingen", &["user_id"]),
        ("methods", &["goal_ids"]),
        ("overtuigingen", &["goal_ids"]),
        ("companies", &["lower(code)"]),
        ("airtable_id_map", &["table_name", "airtable_record_id"]),
        ("sync_dead_letter", &["direction", "first_failed_at"]),
    ];
    for (table, cols) in hot {
        let keys: Vec<Vec<String>> = sqlx::query_scalar::<_, Vec<String>>(
            "SELECT array_agg(pg_get_indexdef(i.indexrelid, k.ord::int, true) ORDER BY k.ord)
             FROM pg_index i, generate_series(1, i.indnkeyatts) AS k(ord)
             WHERE i.indrelid = to_regclass($1) GROUP BY i.indexrelid",
        )
        .bind(table)
        .fetch_all(&db.pool)
        .await
        .expect("indexes");
        let found = keys
            .iter()
            .any(|k| k.len() >= cols.len() && k.iter().zip(cols.iter()).all(|(a, b)| a == b));
        assert!(found, "no index on {table}({}); indexes: {keys:?}", cols.join(", "));
    }
}

#[tokio::test]
async fn hot_queries_use_their_indexes_on_a_realistic_table() {
    let db = test_db().await;
    // Enough rows that a sequential scan would be the planner's choice without an index.
    sqlx::raw_sql(
        "INSERT INTO methods (id, name, kind) VALUES ('00000000-0000-4000-8000-00000000a001', 'h', 'habit');
         INSERT INTO users (id, email) SELECT gen_random_uuid(), 'u' || g || '@example.com' FROM generate_series(1, 200) g;
         INSERT INTO habit_usage (user_id, method_id, date)
           SELECT u.id, '00000000-0000-4000-8000-00000000a001', current_date - d
           FROM users u, generate_series(0, 99) d;
         ANALYZE users; ANALYZE habit_usage;",
    )
    .execute(&db.pool)
    .await
    .expect("seed");
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT * FROM habit_usage WHERE user_id = (SELECT id FROM users LIMIT 1)
         AND date BETWEEN current_date - 7 AND current_date",
    )
    .fetch_all(&db.pool)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("habit_usage_user_date_idx"), "{plan}");
}
