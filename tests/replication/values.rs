//! Every value Postgres can store reaches a destination, and a change that keeps failing is
//! isolated instead of stopping the stream.

use cdc::destination::MemoryDestination;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{
    cdc::{confirmed_past, current_wal_lsn, prepare, slot_name, start, stream_config, wait_until},
    test_db,
};

async fn exec(pool: &sqlx::PgPool, sql: &str) {
    if let Err(e) = sqlx::raw_sql(sql).execute(pool).await {
        panic!("{sql}: {e}");
    }
}

/// (SQL literal, the JSON a destination must get), written by hand: the expectation does not
/// come from the decoder under test.
type Pool = (&'static str, &'static str, Vec<(&'static str, Value)>);

fn pools() -> Vec<Pool> {
    vec![
        (
            "d",
            "date",
            vec![
                ("'2026-11-21'", json!("2026-11-21")),
                ("'infinity'", json!("infinity")),
                ("'-infinity'", json!("-infinity")),
                ("'0044-03-15 BC'", json!("-0043-03-15")),
                ("'10000-01-01'", json!("+10000-01-01")),
                ("'5874897-12-31'", json!("5874897-12-31")),
                ("'4713-01-01 BC'", json!("-4712-01-01")),
                ("NULL", Value::Null),
            ],
        ),
        (
            "ts",
            "timestamp",
            vec![
                ("'2026-11-21 07:30:00.5'", json!("2026-11-21T07:30:00.500")),
                ("'infinity'", json!("infinity")),
                ("'-infinity'", json!("-infinity")),
                ("'10000-01-01 00:00:00'", json!("+10000-01-01T00:00:00.000")),
                ("'0044-03-15 10:00:00 BC'", json!("-0043-03-15T10:00:00.000")),
            ],
        ),
        (
            "tstz",
            "timestamptz",
            vec![
                ("'2026-11-21 09:30:00+02'", json!("2026-11-21T07:30:00.000Z")),
                ("'infinity'", json!("infinity")),
                ("'-infinity'", json!("-infinity")),
                ("'12000-06-01 00:00:00+00'", json!("+12000-06-01T00:00:00.000Z")),
            ],
        ),
        ("t", "time", vec![("'24:00:00'", json!("24:00:00")), ("'07:30:00'", json!("07:30:00"))]),
        (
            "num",
            "numeric",
            vec![
                ("'NaN'", json!("NaN")),
                ("'Infinity'", json!("Infinity")),
                ("'-Infinity'", json!("-Infinity")),
                ("'-12.5'", json!(-12.5)),
                (
                    "'123456789012345678901234567890.123'",
                    json!(123456789012345678901234567890.123_f64),
                ),
            ],
        ),
        (
            "f",
            "float8",
            vec![
                ("'NaN'", json!("NaN")),
                ("'Infinity'", json!("Infinity")),
                ("'-Infinity'", json!("-Infinity")),
                ("'-0'", json!(-0.0)),
                ("'1e308'", json!(1e308)),
            ],
        ),
        (
            "i",
            "interval",
            vec![
                ("'1 year 2 mons 3 days 04:05:06'", json!("1 year 2 mons 3 days 04:05:06")),
                ("'-1 days'", json!("-1 days")),
            ],
        ),
        (
            "dates",
            "date[]",
            vec![
                ("'{}'", json!([])),
                ("'{NULL}'", json!([null])),
                ("'{infinity,NULL,2026-01-01}'", json!(["infinity", null, "2026-01-01"])),
                ("'{{2026-01-01},{NULL}}'", json!([["2026-01-01"], [null]])),
            ],
        ),
        (
            "tags",
            "text[]",
            vec![
                ("'{}'", json!([])),
                (
                    "ARRAY['a,b', 'NULL', NULL, '', 'x\"y', 'back\\slash']",
                    json!(["a,b", "NULL", null, "", "x\"y", "back\\slash"]),
                ),
            ],
        ),
        (
            "txt",
            "text",
            vec![
                ("'héllo 👋 \u{0007}'", json!("héllo 👋 \u{0007}")),
                ("''", json!("")),
                ("repeat('x', 300000)", json!("x".repeat(300_000))),
            ],
        ),
        (
            "j",
            "jsonb",
            vec![
                ("'{\"a\": [1, null, \"x\"]}'", json!({ "a": [1, null, "x"] })),
                // jsonb keeps numbers as numeric: past f64, the document's text goes along.
                ("'1e400'", json!(format!("1{}", "0".repeat(400)))),
            ],
        ),
    ]
}

#[tokio::test]
async fn every_value_postgres_stores_streams_typed_and_never_stalls_the_session() {
    let db = test_db().await;
    let pools = pools();
    let columns: Vec<String> = pools.iter().map(|(c, t, _)| format!("{c} {t}")).collect();
    exec(&db.pool, &format!("CREATE TABLE oddities (n int PRIMARY KEY, {})", columns.join(", ")))
        .await;
    let slot = slot_name();
    prepare(&db.url(), "pub_odd", &["oddities"], &slot).await;
    let s = start(stream_config(&db.url(), &slot, "pub_odd"), MemoryDestination::new());

    // Random rows drawn from the pools, seeded; every literal appears at least once.
    let mut rng = StdRng::seed_from_u64(11);
    let rows = 60;
    let mut expected: Vec<Vec<Value>> = Vec::new();
    let mut sql = String::from("BEGIN;");
    for n in 0..rows {
        let mut literals = Vec::new();
        let mut values = Vec::new();
        for (_, _, pool) in &pools {
            let (lit, v) = &pool[if n < pool.len() { n } else { rng.random_range(0..pool.len()) }];
            literals.push(*lit);
            values.push(v.clone());
        }
        sql += &format!("INSERT INTO oddities VALUES ({n}, {});", literals.join(", "));
        // Every tenth transaction also updates and deletes a row.
        if n % 10 == 9 {
            sql += &format!("COMMIT; BEGIN; UPDATE oddities SET d = 'infinity' WHERE n = {}; DELETE FROM oddities WHERE n = {n}; COMMIT; BEGIN;", n - 1);
        }
        expected.push(values);
    }
    sql += "COMMIT;";
    exec(&db.pool, &sql).await;
    let after = current_wal_lsn(&db.pool).await;
    s.wait_for_changes(rows + 2 * (rows / 10)).await;
    wait_until(Duration::from_secs(20), "the slot confirmed past every row", || async {
        confirmed_past(&db.pool, &slot, &after).await
    })
    .await;
    assert_eq!(
        s.health.reconnects.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no session failed"
    );

    let inserts: Vec<_> =
        s.changes().into_iter().filter(|c| c.op == cdc::replication::Op::Insert).collect();
    assert_eq!(inserts.len(), rows);
    for c in &inserts {
        let row = c.new.as_ref().expect("new").to_json();
        let n = row["n"].as_i64().expect("n") as usize;
        for ((column, _, _), want) in pools.iter().zip(&expected[n]) {
            let got = &row[*column];
            let same = match (got, want) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                _ => got == want,
            };
            assert!(same, "row {n} column {column}: got {got}, want {want}");
        }
    }
    s.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_change_that_fails_every_delivery_is_isolated_and_the_rest_of_its_transaction_flows() {
    let db = test_db().await;
    exec(&db.pool, "CREATE TABLE notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text)")
        .await;
    let slot = slot_name();
    prepare(&db.url(), "pub_notes", &["notes"], &slot).await;
    let mut config = stream_config(&db.url(), &slot, "pub_notes");
    config.reconnect_min = Duration::from_millis(10);
    config.reconnect_max = Duration::from_millis(50);
    let s = start(config, MemoryDestination::poisoned_by("poison"));
    wait_until(Duration::from_secs(20), "the stream connected", || async {
        s.health.connected.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;

    exec(&db.pool, "INSERT INTO notes (body) VALUES ('first')").await;
    exec(&db.pool, "BEGIN; INSERT INTO notes (body) VALUES ('before'); INSERT INTO notes (body) VALUES ('poison'); INSERT INTO notes (body) VALUES ('after'); COMMIT;").await;
    exec(&db.pool, "INSERT INTO notes (body) VALUES ('last')").await;
    let after = current_wal_lsn(&db.pool).await;
    wait_until(Duration::from_secs(30), "the poison isolated, the rest acknowledged", || async {
        confirmed_past(&db.pool, &slot, &after).await
    })
    .await;
    let isolated = s.log.lock().expect("log").isolated.clone();
    assert_eq!(isolated.len(), 1, "isolated once: {isolated:?}");
    let poison = &isolated[0];
    assert_eq!(poison.table.as_deref(), Some("notes"));
    assert_eq!(poison.payload["body"], "poison");
    assert_eq!((poison.ordinal, poison.attempts), (1, 3), "the second change, after 3 deliveries");
    assert!(poison.reason.contains("poisoned by"), "{}", poison.reason);
    // Every good change arrived; the last delivery of the transaction carries both of its
    // good changes (earlier deliveries stopped at the poison).
    let bodies: Vec<String> = s
        .changes()
        .iter()
        .filter_map(|c| c.new.as_ref()?.to_json().get("body")?.as_str().map(str::to_owned))
        .collect();
    for good in ["first", "before", "after", "last"] {
        assert!(bodies.iter().any(|b| b == good), "{good} in {bodies:?}");
    }
    assert!(!bodies.iter().any(|b| b == "poison"), "the poison never reached the destination");
    assert_eq!(s.health.reconnects.load(std::sync::atomic::Ordering::SeqCst), 3);
    s.stop().await.expect("clean stop");
}
