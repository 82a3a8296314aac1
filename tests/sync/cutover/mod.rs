//! The cutover from a legacy base end to end, with the `cdc` binary: check and --apply,
//! import (killed and resumed), bad records dead-lettered then fixed, verify, the first
//! outbound writes, an admin's edit of a Postgres-owned field, the roll forward.

use airtable_emulator::{Emulator, RateLimits};
use std::{process::Stdio, time::Duration};
use testkit::{
    airtable::{cdc_run, emulator, BASE, TOKEN},
    cargo_bin,
    cdc::{free_port, slot_name, until_ok, wait_until},
    legacy as fixture, TestDb,
};

const ALL_SCOPES: [&str; 5] = [
    "data.records:read",
    "data.records:write",
    "schema.bases:read",
    "schema.bases:write",
    "webhook:manage",
];

struct Cli<'a> {
    db: &'a TestDb,
    e: &'a Emulator,
    slot: String,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(cargo_bin("cdc"));
        c.args(args)
            .env("DATABASE_URL", self.db.url())
            .env("CDC_SLOT", &self.slot)
            .env("CDC_PUBLICATION", format!("{}_pub", self.slot))
            .env("AIRTABLE_API_URL", self.e.url())
            .env("AIRTABLE_TOKEN", TOKEN)
            .env("AIRTABLE_BASE_ID", BASE)
            .env("AIRTABLE_BASE_RPS", "0")
            .env("AIRTABLE_TOKEN_RPS", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let o = self.command(args).output().await.expect("cdc");
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.expect(sql)
}

/// Every table's row count against what the fixture made, and no record mapped twice.
async fn holds(db: &TestDb, expected: &fixture::Expected) -> Result<(), String> {
    let mut problems = Vec::new();
    for (table, n) in expected {
        let rows = count(db, &format!("SELECT count(*) FROM {table}")).await;
        let mapped = count(db, &format!("SELECT count(DISTINCT airtable_record_id) FROM airtable_id_map WHERE table_name = '{table}'")).await;
        if rows != *n as i64 || mapped != rows {
            problems.push(format!("{table}: {rows} rows, {mapped} mapped records, {n} expected"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// `cdc verify --json`: every mismatch, derived progress included.
async fn drift(cli: &Cli<'_>) -> Vec<serde_json::Value> {
    let o = cli.run(&["verify", "--json"]).await;
    let parity: serde_json::Value =
        serde_json::from_str(&o.stdout).unwrap_or_else(|_| panic!("{}\n{}", o.stdout, o.stderr));
    parity
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["mismatches"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_legacy_base_is_checked_imported_verified_and_rolled_forward() {
    // Its own cluster: replication origins are cluster-wide, and the import and its daemon
    // hold the inbound origin, which the other tests' daemons on the shared cluster use too.
    let cluster: &'static testkit::Cluster =
        Box::leak(Box::new(testkit::Cluster::start(Default::default()).expect("cluster")));
    let db = testkit::migrated_db_on(cluster).await;
    let e = emulator(fixture::schema(), RateLimits::off()).await;
    let legacy = fixture::fill(&e, 150);
    let total: usize = legacy.expected.values().sum();
    assert!(total >= 5000, "the fixture holds {total} records");
    let cli = Cli { db: &db, e: &e, slot: slot_name() };

    // 1. The base lacks the merge field: check fails; --apply needs the scope, then fixes it.
    let o = cli.run(&["airtable", "check"]).await;
    assert!(
        !o.ok && o.stdout.contains("MISSING") && o.stdout.contains("Programs.pg_id"),
        "{}",
        o.stdout
    );
    let o = cli.run(&["airtable", "check", "--apply"]).await;
    assert!(!o.ok && o.stderr.contains("schema.bases:write"), "{}", o.stderr);
    e.admin().set_scopes(&ALL_SCOPES);
    let o = cli.run(&["airtable", "check", "--apply"]).await;
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("created field \"Programs\".\"pg_id\""), "{}", o.stdout);
    // A rename is reported as one (same id, new name), and passes: ids are on the wire.
    e.admin().rename_field(BASE, "Programs", "Motivation", "Why").expect("rename");
    let o = cli.run(&["airtable", "check"]).await;
    assert!(
        o.ok && o.stdout.contains("RENAMED") && o.stdout.contains("was renamed to \"Why\""),
        "{}",
        o.stdout
    );
    e.admin().rename_field(BASE, "Programs", "Why", "Motivation").expect("rename back");

    // 2. The import refuses to run before the slot, then is killed mid-way and resumed.
    let o = cli.run(&["import"]).await;
    assert!(!o.ok && o.stderr.contains("cdc slot create"), "{}", o.stderr);
    // The publication before the slot: a slot decodes only publications older than itself.
    assert!(cli.run(&["publication", "sync"]).await.ok);
    assert!(cli.run(&["slot", "create"]).await.ok);
    let mut slow = cli.command(&["import"]);
    slow.env("AIRTABLE_BASE_RPS", "4").stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = slow.spawn().expect("import");
    wait_until(Duration::from_secs(60), "the import reaches the planning", || async {
        count(&db, "SELECT count(*) FROM program_schedule").await > 0
    })
    .await;
    child.start_kill().expect("kill -9");
    child.wait().await.expect("killed");
    let o = cli.run(&["import"]).await;
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("dead-lettered"), "{}", o.stdout);
    let codes: Vec<(String, String)> = sqlx::query_as("SELECT table_name, error_code FROM sync_dead_letter WHERE direction = 'inbound' AND status = 'pending' ORDER BY table_name")
        .fetch_all(&db.pool).await.expect("dead letters");
    assert_eq!(
        codes,
        vec![
            ("habit_usage".to_owned(), "UNIQUE_VIOLATION".to_owned()),
            ("program_schedule".to_owned(), "FOREIGN_KEY_VIOLATION".to_owned()),
            ("programs".to_owned(), "UNKNOWN_LINK".to_owned()),
            ("users".to_owned(), "UNIQUE_VIOLATION".to_owned()),
        ]
    );
    let o = cli.run(&["verify"]).await;
    assert!(!o.ok && o.stdout.contains("missing_in_postgres"), "{}", o.stdout);

    // 3. The admin fixes the bad records; the import run again takes them, and is exact.
    fixture::fix_bad_records(&e, &legacy);
    let o = cli.run(&["import"]).await;
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    until_ok(Duration::from_secs(5), "Postgres holds the base", || holds(&db, &legacy.expected))
        .await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM sync_dead_letter WHERE status = 'pending'").await,
        0
    );
    // Values, from the generator: each program belongs to the user of the same number.
    assert_eq!(count(&db, "SELECT count(*) FROM programs p JOIN users u ON u.id = p.user_id WHERE p.name = 'Program ' || substr(u.name, 6)").await, 150);
    assert_eq!(count(&db, "SELECT count(*) FROM method_usage m JOIN program_schedule s ON s.id = m.program_schedule_id WHERE s.program_id = m.program_id AND m.remark LIKE 'Did %'").await, 150 * 15);
    // A finished import run again changes nothing.
    let o = cli.run(&["import"]).await;
    assert!(o.ok, "{}", o.stderr);
    for line in
        o.stdout.lines().filter(|l| legacy.expected.keys().any(|t| l.starts_with(&format!("{t} "))))
    {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[2], "0", "nothing imported twice: {line}");
    }

    // The daemon starts on the imported base: it copies nothing back, only the derived
    // progress the import queued (Postgres computes it).
    let port = free_port();
    let mut run =
        cdc_run(&cargo_bin("cdc"), &db.url(), &cli.slot, &format!("{}_pub", cli.slot), port, &e);
    run.env("SYNC_FLUSH_MS", "50")
        .env("AIRTABLE_BASE_RPS", "0")
        .env("AIRTABLE_TOKEN_RPS", "0")
        .env("SYNC_RECONCILE_DELAY_MS", "300")
        // The daemon's own parity check, every second over every row.
        .env("SYNC_VERIFY_INTERVAL_MS", "1000")
        .env("SYNC_VERIFY_SAMPLE", "1000")
        .env("SYNC_VERIFY_SETTLE_MS", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut run = tokio::process::Command::from(run);
    run.kill_on_drop(true);
    let mut daemon = run.spawn().expect("cdc run");
    until_ok(Duration::from_secs(60), "the derived backfill is done", || async {
        let jobs: Vec<(String, String, String)> =
            sqlx::query_as("SELECT table_name, reason, state FROM sync_backfill ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .map_err(|e| e.to_string())?;
        match jobs.as_slice() {
            [(t, r, s)] if t == "programs" && r == "repair" && s == "done" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let d = drift(&cli).await;
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(
        e.admin().records(BASE, "Programs").expect("programs").len(),
        legacy.expected["programs"]
    );
    // 4. An admin renames tables and fields under the running daemon: the sync goes on.
    e.admin().rename_table(BASE, "Programs", "Coaching programs").expect("rename");
    e.admin().rename_field(BASE, "Coaching programs", "Motivation", "Why").expect("rename");
    e.admin().rename_field(BASE, "Goals", "Name", "Title").expect("rename");
    let goal = legacy.ids["Goals"][1].clone();
    e.admin()
        .update_record(
            BASE,
            "Goals",
            &goal,
            serde_json::json!({ "Title": "Goal 1, renamed field" }),
        )
        .expect("edit");
    until_ok(
        Duration::from_secs(30),
        "the edit under a renamed field reaches Postgres",
        || async {
            match count(&db, "SELECT count(*) FROM goals WHERE name = 'Goal 1, renamed field'")
                .await
            {
                1 => Ok(()),
                n => Err(format!("{n} rows")),
            }
        },
    )
    .await;
    // An app write to an imported row updates its record, never a second one.
    sqlx::query("UPDATE programs SET motivation = 'changed in the app' WHERE name = 'Program 5'")
        .execute(&db.pool)
        .await
        .expect("update");
    until_ok(Duration::from_secs(30), "the change reaches the imported record", || async {
        let records = e.admin().records(BASE, "Coaching programs").map_err(|e| format!("{e:?}"))?;
        let hits: Vec<_> = records.iter().filter(|r| r["fields"]["Name"] == "Program 5").collect();
        match hits.as_slice() {
            [r] if r["fields"]["Why"] == "changed in the app"
                && r["fields"]["pg_id"].is_string() =>
            {
                Ok(())
            }
            other => Err(format!("{} records: {other:?}", other.len())),
        }
    })
    .await;
    assert_eq!(
        e.admin().records(BASE, "Coaching programs").expect("programs").len(),
        legacy.expected["programs"]
    );
    let o = cli.run(&["verify", "--table", "goals"]).await;
    assert!(o.ok, "verify reads through the renames too: {}", o.stdout);
    e.admin().rename_table(BASE, "Coaching programs", "Programs").expect("rename back");
    e.admin().rename_field(BASE, "Programs", "Why", "Motivation").expect("rename back");
    e.admin().rename_field(BASE, "Goals", "Title", "Name").expect("rename back");

    // 5. Drift of every kind: verify names it, --repair sets it right by the side that owns
    // it, beside the running daemon (the repair writes under the operator's origin).
    // An admin edits a Postgres-owned field in Airtable ...
    let rec = legacy.ids["Programs"][7].clone();
    e.admin()
        .update_record(
            BASE,
            "Programs",
            &rec,
            serde_json::json!({ "Motivation": "edited in Airtable" }),
        )
        .expect("edit");
    let o = cli.run(&["verify", "--table", "programs"]).await;
    assert!(
        !o.ok
            && o.stdout.contains(&rec)
            && o.stdout.contains("Motivation")
            && o.stdout.contains("edited in Airtable"),
        "{}",
        o.stdout
    );
    let o = cli.run(&["verify", "--table", "programs", "--sample", "20", "--json"]).await;
    let parity: serde_json::Value = serde_json::from_str(&o.stdout).expect("json");
    assert_eq!(parity[0]["airtable_records"], legacy.expected["programs"]);
    // ... and copies a program's record (a duplicate); SQL by hand changes an Airtable-owned
    // field and deletes a reference row.
    let programs = e.admin().records(BASE, "Programs").expect("programs");
    let original = programs.iter().find(|r| r["fields"]["Name"] == "Program 3").expect("Program 3");
    let mut copy = original["fields"].as_object().cloned().expect("fields");
    copy.retain(|k, _| k != "Record summary" && k != "Created");
    let dup = e.admin().create_records(BASE, "Programs", vec![copy.into()]).expect("copy");
    sqlx::query("UPDATE goals SET name = 'changed by hand' WHERE name = 'Goal 2'")
        .execute(&db.pool)
        .await
        .expect("update");
    sqlx::query("DELETE FROM prompts WHERE key = 'prompt.4'")
        .execute(&db.pool)
        .await
        .expect("delete");
    let kinds = |d: &[serde_json::Value]| {
        let mut k: Vec<String> =
            d.iter().map(|m| format!("{} {}", m["table"], m["kind"]).replace('"', "")).collect();
        k.sort();
        k
    };
    until_ok(Duration::from_secs(10), "verify sees every drift", || async {
        let k = kinds(&drift(&cli).await);
        let want =
            ["goals field", "programs duplicate", "programs field", "prompts missing_in_postgres"];
        if k == want {
            Ok(())
        } else {
            Err(format!("{k:?}"))
        }
    })
    .await;
    // The daemon's parity check sees the duplicate too.
    let http = reqwest::Client::new();
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    until_ok(Duration::from_secs(30), "sync_parity_drift counts the duplicate", || async {
        let text = testkit::metrics_text(&http, &metrics).await;
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("sync_parity_drift{")
                    && l.contains("table=\"programs\"")
                    && l.contains("kind=\"duplicate\"")
            })
            .unwrap_or_default()
            .to_owned();
        if line.ends_with(" 1") {
            Ok(())
        } else {
            Err(line)
        }
    })
    .await;
    let o = cli.run(&["verify", "--repair", "--wait", "60"]).await;
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("1 duplicates removed") && o.stdout.contains("1 re-imported"),
        "{}",
        o.stdout
    );
    let d = drift(&cli).await;
    assert!(d.is_empty(), "{d:?}");
    let records = e.admin().records(BASE, "Programs").expect("programs");
    assert_eq!(records.len(), legacy.expected["programs"]);
    assert!(records.iter().all(|r| r["id"] != dup[0]["id"]), "the copy is the one removed");
    let fixed = records.iter().find(|r| r["id"] == rec.as_str()).expect("edited record");
    assert_ne!(fixed["fields"]["Motivation"], "edited in Airtable", "Postgres's value is back");
    assert_eq!(count(&db, "SELECT count(*) FROM goals WHERE name = 'Goal 2'").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM prompts WHERE key = 'prompt.4'").await, 1);
    until_ok(Duration::from_secs(30), "sync_parity_drift is back at 0", || async {
        let text = testkit::metrics_text(&http, &metrics).await;
        let drift: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("sync_parity_drift{") && !l.ends_with(" 0"))
            .collect();
        if drift.is_empty() {
            Ok(())
        } else {
            Err(drift.join("; "))
        }
    })
    .await;

    // 6. Roll back, then forward: with the daemon stopped (the PWA on Airtable), admins and
    // the PWA change Airtable; what changed since comes back into Postgres, exactly.
    daemon.start_kill().expect("stop");
    daemon.wait().await.expect("stopped");
    let since = (chrono::Utc::now() - chrono::Duration::seconds(2)).to_rfc3339();
    let rec9 = legacy.ids["Programs"][9].clone();
    e.admin()
        .update_record(BASE, "Programs", &rec9, serde_json::json!({ "Motivation": "rolled back" }))
        .expect("edit");
    let user3 = legacy.ids["Users"][3].clone();
    e.admin()
        .create_records(
            BASE,
            "Programs",
            vec![serde_json::json!({ "Name": "Made during the rollback", "User": [user3], "Start": "2024-03-01", "End": "2024-03-20" })],
        )
        .expect("create");
    let o = cli.run(&["import", "--since", &since]).await;
    assert!(o.ok, "{}\n{}", o.stdout, o.stderr);
    assert_eq!(
        count(&db, "SELECT count(*) FROM programs WHERE motivation = 'rolled back'").await,
        1
    );
    assert_eq!(count(&db, "SELECT count(*) FROM programs p JOIN users u ON u.id = p.user_id WHERE p.name = 'Made during the rollback' AND u.name = 'User 3'").await, 1);
    let mut daemon = run.spawn().expect("cdc run");
    until_ok(Duration::from_secs(60), "the roll forward's derived backfill is done", || async {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_backfill WHERE state <> 'done'")
                .fetch_one(&db.pool)
                .await
                .map_err(|e| e.to_string())?;
        if open == 0 {
            Ok(())
        } else {
            Err(format!("{open} open jobs"))
        }
    })
    .await;
    let d = drift(&cli).await;
    assert!(d.is_empty(), "{d:?}");
    daemon.start_kill().expect("stop");
}
