//! The daemon's inbound side end to end: an admin edits the emulator (as Airtable's UI),
//! webhooks and polls carry the edits into Postgres.

use super::outbound::{exec, setup, DEMO};
use airtable_emulator::{Emulator, RateLimits};
use cdc::inbound::webhook::HookKind;
use serde_json::{json, Value};
use std::time::Duration;
use testkit::{
    airtable::{
        airtable_config, emulator, mapping, mirror_reference_data, schema_for, start_sync, BASE,
    },
    api::{code, serve_with, user_with_password, Client},
    cdc::wait_until,
    inbound::{hook_id, pg_id, start_inbound, Receiving},
    test_db, TestDb,
};

const LIMIT: Duration = Duration::from_secs(20);

/// Demo data in Postgres and its reference data mirrored (and mapped) in Airtable, the
/// inbound side running with its webhook in place.
pub(super) async fn receiving(
    db: &TestDb,
    tweak: impl FnOnce(&mut cdc::inbound::InboundConfig),
) -> (Emulator, Receiving) {
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    exec(&db.pool, DEMO).await;
    mirror_reference_data(&e, BASE, &db.pool, &mapping()).await;
    let r = start_inbound(&db.url(), &e, tweak).await;
    ready(db, &r).await;
    (e, r)
}

/// The backfill (a reconcile of every Airtable-owned table) is done, and the webhook is
/// there when webhooks are on.
async fn ready(db: &TestDb, r: &Receiving) {
    let tables = mapping().tables.iter().filter(|t| t.inbound().next().is_some()).count() as i64;
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
    // The first inbound pass reads every table; under a loaded parallel suite it takes longer.
    wait_until(LIMIT * 3, "the backfill is done", || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_checkpoint WHERE name LIKE 'inbound.poll.%'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("checkpoints");
        n == tables
    })
    .await;
    if r.inbound.config().webhooks {
        wait_until(LIMIT, "the webhooks are created", || async {
            hook_id(&db.pool, "users").await.is_some() && hook_id(&db.pool, "base").await.is_some()
        })
        .await;
    }
}

fn rec(v: &Value) -> String {
    v["id"].as_str().expect("record id").to_owned()
}

async fn text(pool: &sqlx::PgPool, sql: &str) -> Option<String> {
    sqlx::query_scalar(sql).fetch_optional(pool).await.expect(sql)
}

/// Waits until `table`'s row for `record` satisfies `sql` (a boolean over `t`, the row).
async fn wait_row(db: &TestDb, table: &str, record: &str, sql: &str) {
    let what = format!("{table} {record}: {sql}");
    wait_until(LIMIT, &what, || async {
        let Some(id) = pg_id(&db.pool, table, record).await else { return false };
        sqlx::query_scalar::<_, bool>(&format!(
            "SELECT COALESCE(({sql}), false) FROM \"{table}\" t WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .expect("row")
        .unwrap_or(false)
    })
    .await;
}

pub(super) async fn record_of(db: &TestDb, table: &str, pg: &str) -> String {
    text(&db.pool, &format!("SELECT airtable_record_id FROM airtable_id_map WHERE table_name = '{table}' AND pg_id = '{pg}'"))
        .await
        .expect("mapped")
}

#[tokio::test]
async fn creates_updates_and_deletes_of_every_airtable_owned_table_reach_postgres() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let admin = e.admin();
    let goal = record_of(&db, "goals", "00000000-0000-4000-8000-000000000201").await;
    let category = text(&db.pool, "SELECT airtable_record_id FROM airtable_id_map WHERE table_name = 'mindset_categories' LIMIT 1").await.expect("category");

    // Sunday, made unreferenced (the demo planning uses every day): its deletion deletes the
    // row, and a new one fits.
    exec(&db.pool, "UPDATE program_schedule SET day_of_week_id = NULL WHERE day_of_week_id = '00000000-0000-4000-8000-000000000107'").await;
    let sunday = record_of(&db, "days_of_week", "00000000-0000-4000-8000-000000000107").await;
    let referenced: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM program_schedule WHERE day_of_week_id = '00000000-0000-4000-8000-000000000107') OR EXISTS (SELECT 1 FROM personal_goals WHERE '00000000-0000-4000-8000-000000000107' = ANY (scheduled_day_ids)) OR EXISTS (SELECT 1 FROM programs WHERE '00000000-0000-4000-8000-000000000107' = ANY (day_of_week_ids))").fetch_one(&db.pool).await.expect("refs");
    assert!(!referenced, "the delete path below needs Sunday unreferenced");
    admin.delete_record(BASE, "Days of week", &sunday).expect("delete");
    wait_until(LIMIT, "Sunday deleted", || async {
        text(&db.pool, "SELECT id::text FROM days_of_week WHERE iso_day = 7").await.is_none()
    })
    .await;

    let cases: Vec<(&str, &str, Value, Value, &str)> = vec![
        (
            "companies",
            "Companies",
            json!({ "Name": "Nieuw BV", "Code": "NIEUW", "Active": true }),
            json!({ "Name": "Nieuwer BV" }),
            "t.name = 'Nieuwer BV' AND t.code = 'NIEUW'",
        ),
        (
            "goals",
            "Goals",
            json!({ "Name": "Rust", "Order": 9 }),
            json!({ "Order": 10 }),
            "t.sort_order = 10",
        ),
        (
            "mindset_categories",
            "Mindset categories",
            json!({ "Name": "Groei" }),
            json!({ "Description": "Leren" }),
            "t.description = 'Leren'",
        ),
        (
            "methods",
            "Methods",
            json!({ "Name": "Wandelen", "Kind": "habit", "Goals": [goal] }),
            json!({ "Kind": "method", "Duration (minutes)": 20 }),
            "t.kind = 'method' AND t.duration_minutes = 20 AND cardinality(t.goal_ids) = 1",
        ),
        (
            "overtuigingen",
            "Overtuigingen",
            json!({ "Name": "Ik kan het", "Mindset category": [category], "Level": 1 }),
            json!({ "Level": 2 }),
            "t.level = 2 AND t.mindset_category_id IS NOT NULL",
        ),
        (
            "prompts",
            "Prompts",
            json!({ "Key": "welkom.nieuw", "Category": "prompt", "Title": "Hoi", "Body": "Welkom" }),
            json!({ "Body": "Welkom terug" }),
            "t.body = 'Welkom terug'",
        ),
        (
            "users",
            "Users",
            json!({ "Email": "Nieuw@Example.com", "Name": "Nieuw", "Role": "user", "Status": "active", "Language": "nl" }),
            json!({ "Role": "coach" }),
            "t.role = 'coach' AND t.email = 'Nieuw@Example.com'",
        ),
    ];
    let mut created = Vec::new();
    for (table, airtable, fields, update, _) in &cases {
        let r = admin.create_records(BASE, airtable, vec![fields.clone()]).expect("create");
        let id = rec(&r[0]);
        wait_row(&db, table, &id, "true").await;
        admin.update_record(BASE, airtable, &id, update.clone()).expect("update");
        created.push((*table, *airtable, id));
    }
    let day = admin
        .create_records(BASE, "Days of week", vec![json!({ "Name": "Zondag", "Day number": 7 })])
        .expect("day");
    wait_row(&db, "days_of_week", &rec(&day[0]), "t.iso_day = 7").await;
    for ((table, _, id), (_, _, _, _, check)) in created.iter().zip(&cases) {
        wait_row(&db, table, id, check).await;
    }
    // Rows created from Airtable records get their pg id written back into the record.
    let (_, _, user_rec) = created.iter().find(|c| c.0 == "users").expect("user");
    let user_pg = pg_id(&db.pool, "users", user_rec).await.expect("mapped");
    wait_until(LIMIT, "the pg id is stamped on the Airtable record", || async {
        admin.records(BASE, "Users").expect("records").iter().any(|r| {
            r["id"] == user_rec.as_str() && r["fields"]["pg_id"] == user_pg.to_string().as_str()
        })
    })
    .await;

    // Deletions: unreferenced rows go; a referenced one (the demo habit has usage) is
    // soft-deleted so history keeps its meaning.
    for (table, airtable, id) in &created {
        let pg = pg_id(&db.pool, table, id).await.expect("mapped");
        admin.delete_record(BASE, airtable, id).expect("delete");
        wait_until(LIMIT, &format!("{table} {id} deleted"), || async {
            text(&db.pool, &format!("SELECT id::text FROM \"{table}\" WHERE id = '{pg}'"))
                .await
                .is_none()
        })
        .await;
    }
    let habit = record_of(&db, "methods", "00000000-0000-4000-8000-000000000403").await;
    admin.delete_record(BASE, "Methods", &habit).expect("delete");
    wait_until(LIMIT, "the used habit is soft-deleted", || async {
        text(&db.pool, "SELECT id::text FROM methods WHERE id = '00000000-0000-4000-8000-000000000403' AND deleted_at IS NOT NULL").await.is_some()
    })
    .await;
    let usage: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM habit_usage WHERE method_id = '00000000-0000-4000-8000-000000000403'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("usage");
    assert!(usage > 0, "the habit's usage is kept");
    r.stop().await;
}

#[tokio::test]
async fn the_airtable_owned_field_of_a_postgres_owned_row_is_applied_alone() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let goal_id: uuid::Uuid = sqlx::query_scalar("INSERT INTO personal_goals (user_id, name) VALUES ('00000000-0000-4000-8000-000000000701', 'Eerder slapen') RETURNING id").fetch_one(&db.pool).await.expect("goal");
    let created = e
        .admin()
        .create_records(
            BASE,
            "Personal goals",
            vec![json!({ "pg_id": goal_id.to_string(), "Name": "Eerder slapen" })],
        )
        .expect("record");
    exec(&db.pool, &format!("INSERT INTO airtable_id_map (table_name, pg_id, airtable_record_id) VALUES ('personal_goals', '{goal_id}', '{}')", rec(&created[0]))).await;
    e.admin()
        .update_record(
            BASE,
            "Personal goals",
            &rec(&created[0]),
            json!({ "Coach feedback": "Goed bezig", "Name": "Overschreven in Airtable" }),
        )
        .expect("update");
    wait_row(&db, "personal_goals", &rec(&created[0]), "t.coach_feedback = 'Goed bezig'").await;
    let name =
        text(&db.pool, &format!("SELECT name FROM personal_goals WHERE id = '{goal_id}'")).await;
    assert_eq!(name.as_deref(), Some("Eerder slapen"), "only Airtable-owned fields are written");
    // A record Airtable made in a table whose rows Postgres owns creates nothing.
    e.admin()
        .create_records(BASE, "Personal goals", vec![json!({ "Name": "Alleen in Airtable" })])
        .expect("create");
    e.admin()
        .update_record(
            BASE,
            "Personal goals",
            &rec(&created[0]),
            json!({ "Coach feedback": "Klaar" }),
        )
        .expect("update");
    wait_row(&db, "personal_goals", &rec(&created[0]), "t.coach_feedback = 'Klaar'").await;
    let goals: i64 = sqlx::query_scalar("SELECT count(*) FROM personal_goals")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(goals, 1);
    r.stop().await;
}

#[tokio::test]
async fn a_notification_without_the_right_mac_is_refused_and_changes_nothing() {
    let db = test_db().await;
    let (_e, r) = receiving(&db, |_| {}).await;
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/airtable", r.url);
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let body = json!({ "base": { "id": BASE }, "webhook": { "id": hook_id(&db.pool, "base").await }, "timestamp": now }).to_string();
    let missing = http.post(&url).body(body.clone()).send().await.expect("post");
    assert_eq!(missing.status().as_u16(), 401);
    let forged = airtable_emulator::mac_header(b"not the secret", body.as_bytes());
    let bad = http
        .post(&url)
        .header("X-Airtable-Content-MAC", forged)
        .body(body.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 401);
    let key = testkit::inbound::hook_key(&db.pool, "base").await;
    // The MAC covers the exact bytes: the same body re-serialized with a space fails.
    let tampered = body.replacen(':', ": ", 1);
    let good_mac = airtable_emulator::mac_header(&key, body.as_bytes());
    let t = http
        .post(&url)
        .header("X-Airtable-Content-MAC", &good_mac)
        .body(tampered)
        .send()
        .await
        .expect("post");
    assert_eq!(t.status().as_u16(), 401);
    let ok = http
        .post(&url)
        .header("X-Airtable-Content-MAC", &good_mac)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status().as_u16(), 200);
    let refused: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_inbox_events")
        .fetch_one(&db.pool)
        .await
        .expect("events");
    assert_eq!(refused, 0, "no notification applied anything");
    r.stop().await;
}

#[tokio::test]
async fn duplicate_and_replayed_deliveries_change_nothing() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let goal = record_of(&db, "goals", "00000000-0000-4000-8000-000000000201").await;
    let start = text(
        &db.pool,
        "SELECT value->>'cursor' FROM sync_checkpoint WHERE name = 'inbound.webhook.base.cursor'",
    )
    .await
    .and_then(|c| c.parse::<u64>().ok())
    .unwrap_or(1);
    e.admin().update_record(BASE, "Goals", &goal, json!({ "Name": "Eerste" })).expect("update");
    e.admin().update_record(BASE, "Goals", &goal, json!({ "Name": "Tweede" })).expect("update");
    wait_row(&db, "goals", &goal, "t.name = 'Tweede'").await;
    let cursor = |db: &TestDb| {
        let pool = db.pool.clone();
        async move {
            text(&pool, "SELECT value->>'cursor' FROM sync_checkpoint WHERE name = 'inbound.webhook.base.cursor'").await
        }
    };
    // Two edits, two payloads, whatever the numbering starts at.
    let after = (start + 2).to_string();
    wait_until(LIMIT, "every payload is read", || async {
        cursor(&db).await.as_deref() == Some(after.as_str())
    })
    .await;
    let version = "SELECT xmin::text FROM goals WHERE id = '00000000-0000-4000-8000-000000000201'";
    let before = text(&db.pool, version).await;

    // The same pings again, at once and out of order: payloads are read from the cursor.
    let http = reqwest::Client::new();
    let key = testkit::inbound::hook_key(&db.pool, "base").await;
    let hook = hook_id(&db.pool, "base").await.expect("hook");
    let pings = ["10:00:02", "10:00:00", "10:00:01", "10:00:00"].map(|t| {
        let body = json!({ "base": { "id": BASE }, "webhook": { "id": hook }, "timestamp": format!("2026-11-21T{t}.000Z") }).to_string();
        let mac = airtable_emulator::mac_header(&key, body.as_bytes());
        http.post(format!("{}/webhooks/airtable", r.url)).header("X-Airtable-Content-MAC", mac).body(body).send()
    });
    for p in futures::future::join_all(pings).await {
        assert_eq!(p.expect("ping").status().as_u16(), 200);
    }
    // The deliveries again, as if the cursor's commit had been lost: each payload is
    // known by (webhook, number), so replaying the older name cannot roll the row back.
    exec(&db.pool, &format!("UPDATE sync_checkpoint SET value = jsonb_set(value, '{{cursor}}', '{start}') WHERE name = 'inbound.webhook.base.cursor'")).await;
    let drained = r.inbound.drain_payloads(HookKind::Base).await.expect("drain");
    assert!(!drained.broken && drained.changed == 0, "replays change nothing: {drained:?}");
    assert_eq!(cursor(&db).await.as_deref(), Some(after.as_str()));
    assert_eq!(
        text(&db.pool, "SELECT name FROM goals WHERE id = '00000000-0000-4000-8000-000000000201'")
            .await
            .as_deref(),
        Some("Tweede")
    );
    assert_eq!(text(&db.pool, version).await, before, "nothing was written again");
    r.stop().await;
}

#[tokio::test]
async fn a_lost_ping_is_caught_by_the_poll() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |c| c.users_poll = Duration::from_millis(300)).await;
    e.admin().lose_pings(true);
    let created = e
        .admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "poll@example.com", "Name": "Poll", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    wait_row(&db, "users", &rec(&created[0]), "t.email = 'poll@example.com'").await;
    r.stop().await;
}

/// Staff invites, the user sets a password and signs in.
async fn first_login(base: &str, pool: &sqlx::PgPool, email: &str) {
    user_with_password(pool, "coach@example.com", "coach").await;
    let (coach, _) = Client::signed_in(base, "coach@example.com").await;
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_one(pool)
        .await
        .expect("user");
    let (s, inv) = coach.post("/api/auth/invitations", json!({ "user_id": id })).await;
    assert_eq!(s.as_u16(), 201, "{inv}");
    let anon = Client::new(base);
    let (s, b) = anon
        .post(
            "/api/auth/set-password",
            json!({ "email": email, "code": inv["code"], "password": "a brand new password" }),
        )
        .await;
    assert_eq!(s.as_u16(), 204, "{b}");
    let (s, b) = anon
        .post("/api/auth/login", json!({ "email": email, "password": "a brand new password" }))
        .await;
    assert_eq!(s.as_u16(), 200, "{b}");
}

#[tokio::test]
async fn a_user_created_in_airtable_can_log_in_through_the_fast_lane() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let base = serve_with(&db.url(), |_| {}).await;
    e.admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "snel@example.com", "Name": "Snel", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    wait_until(LIMIT, "the user is in Postgres", || async {
        text(&db.pool, "SELECT id::text FROM users WHERE email = 'snel@example.com'")
            .await
            .is_some()
    })
    .await;
    first_login(&base, &db.pool, "snel@example.com").await;
    r.stop().await;
}

#[tokio::test]
async fn a_login_reads_a_missing_user_through_from_airtable() {
    let db = test_db().await;
    // No webhook and no polling: only the read-through can bring the user.
    let (e, r) = receiving(&db, |c| c.webhooks = false).await;
    let base = serve_with(&db.url(), |c| c.read_through_wait = Duration::from_secs(10)).await;
    e.admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "Lees@Example.com", "Name": "Lees", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    let anon = Client::new(&base);
    let started = std::time::Instant::now();
    let (s, b) = anon
        .post(
            "/api/auth/login",
            json!({ "email": "lees@example.com", "password": "no password yet" }),
        )
        .await;
    // No password is set yet, so the login fails like any other: but it brought the user.
    assert_eq!((s.as_u16(), code(&b)), (401, "unauthenticated"), "{b}");
    assert!(text(&db.pool, "SELECT id::text FROM users WHERE email = 'Lees@Example.com'")
        .await
        .is_some());
    assert!(started.elapsed() < Duration::from_secs(10), "answered before the wait ran out");

    // An email Airtable lacks gets its answer fast too; a formula in it finds nobody.
    for email in ["nobody@example.com", "x'),TRUE(),('@example.com", "a\\'@b.nl"] {
        let started = std::time::Instant::now();
        let (s, _) = anon
            .post("/api/auth/login", json!({ "email": email, "password": "whatever it is" }))
            .await;
        assert_eq!(s.as_u16(), 401);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{email}: answered before the wait ran out"
        );
    }
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&db.pool).await.expect("count");
    assert_eq!(users, 2, "the demo user and Lees, nobody else");
    first_login(&base, &db.pool, "Lees@Example.com").await;

    // A miss is not remembered for long: a user created in Airtable right after a failed
    // login is brought by a later login within seconds (it used to wait 30 s).
    let late = json!({ "email": "laat@example.com", "password": "whatever it is" });
    assert_eq!(anon.post("/api/auth/login", late.clone()).await.0.as_u16(), 401);
    e.admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "laat@example.com", "Name": "Laat", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        anon.post("/api/auth/login", late.clone()).await;
        if text(&db.pool, "SELECT id::text FROM users WHERE email = 'laat@example.com'")
            .await
            .is_some()
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the miss was remembered too long");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    r.stop().await;
}

#[tokio::test]
async fn an_airtable_edit_is_applied_once_and_causes_no_outbound_write() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, publication) = setup(&db, &e).await;
    let sync = start_sync(&db.url(), &slot, &publication, airtable_config(&e), mapping()).await;
    super::outbound::converge(&e, &db, LIMIT).await;
    let r = start_inbound(&db.url(), &e, |_| {}).await;
    wait_until(LIMIT, "the webhooks are created", || async {
        hook_id(&db.pool, "users").await.is_some() && hook_id(&db.pool, "base").await.is_some()
    })
    .await;
    // The demo user's record exists (outbound wrote it); an admin renames the user.
    let user = record_of(&db, "users", "00000000-0000-4000-8000-000000000701").await;
    let writes = |e: &Emulator| {
        e.admin()
            .request_log()
            .iter()
            .filter(|q| matches!(q.kind, "create" | "update" | "replace" | "delete"))
            .count()
    };
    let before = writes(&e);
    e.admin().update_record(BASE, "Users", &user, json!({ "Name": "Hernoemd" })).expect("update");
    wait_until(LIMIT, "the rename reaches Postgres", || async {
        text(&db.pool, "SELECT name FROM users WHERE id = '00000000-0000-4000-8000-000000000701'")
            .await
            .as_deref()
            == Some("Hernoemd")
    })
    .await;
    // Let the stream pass the inbound commit: an unrelated write behind it must reach Airtable.
    exec(&db.pool, "UPDATE users SET bonus_points = bonus_points + 1 WHERE id = '00000000-0000-4000-8000-000000000701'").await;
    super::outbound::converge(&e, &db, LIMIT).await;
    let xmin_bonus = text(
        &db.pool,
        "SELECT xmin::text FROM users WHERE id = '00000000-0000-4000-8000-000000000701'",
    )
    .await;
    let after = writes(&e);
    assert_eq!(after - before, 1, "exactly the bonus-points write; the rename was not echoed");
    // Applied once: a poll that reads the same record again writes nothing.
    r.inbound.poll_table(mapping().table_id("users").expect("users")).await.expect("poll");
    let xmin_after = text(
        &db.pool,
        "SELECT xmin::text FROM users WHERE id = '00000000-0000-4000-8000-000000000701'",
    )
    .await;
    assert_eq!(xmin_after, xmin_bonus, "re-reading the same state writes nothing");
    r.stop().await;
    sync.stop().await;
}

#[tokio::test]
async fn malformed_payloads_and_unknown_fields_are_parked_and_the_rest_applied() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let goals = e.admin().table_id(BASE, "Goals").expect("table");
    let order = e.admin().field_id(BASE, "Goals", "Order").expect("field");
    let goal = record_of(&db, "goals", "00000000-0000-4000-8000-000000000201").await;
    let other = record_of(&db, "goals", "00000000-0000-4000-8000-000000000202").await;
    let hook = hook_id(&db.pool, "base").await.expect("hook");
    e.admin().push_payload(BASE, &hook, json!(["not", "a", "payload"])).expect("push");
    e.admin()
        .push_payload(BASE, &hook, json!({
            "timestamp": "2026-11-21T10:00:00.000Z", "baseTransactionNumber": 1, "payloadFormat": "v0",
            "actionMetadata": { "source": "client" },
            "changedTablesById": { goals: { "changedRecordsById": {
                goal.clone(): { "current": { "cellValuesByFieldId": { "fldUNKNOWN0000001": "?" } } },
                other.clone(): { "current": { "cellValuesByFieldId": { order.clone(): "not a number" } } },
            } }, "tblUNKNOWN0000001": { "destroyedRecordIds": ["recX"] } } }))
        .expect("push");
    e.admin().update_record(BASE, "Goals", &goal, json!({ "Order": 42 })).expect("valid edit");
    wait_row(&db, "goals", &goal, "t.sort_order = 42").await;
    wait_until(LIMIT, "four dead letters", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM sync_dead_letter WHERE direction = 'inbound'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("count")
            == 4
    })
    .await;
    let parked: Vec<(String, Option<String>, Value)> = sqlx::query_as(
        "SELECT error_code, airtable_record_id, payload FROM sync_dead_letter WHERE direction = 'inbound' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("dead letters");
    let mut codes: Vec<&str> = parked.iter().map(|p| p.0.as_str()).collect();
    codes.sort();
    assert_eq!(
        codes,
        vec!["INVALID_VALUE", "MALFORMED_PAYLOAD", "UNKNOWN_FIELD", "UNKNOWN_TABLE"],
        "{parked:?}"
    );
    let of = |c: &str| parked.iter().find(|p| p.0 == c).expect(c);
    assert_eq!(
        of("MALFORMED_PAYLOAD").2,
        json!(["not", "a", "payload"]),
        "the raw payload is kept"
    );
    assert_eq!(of("UNKNOWN_FIELD").1.as_deref(), Some(goal.as_str()));
    assert_eq!(of("INVALID_VALUE").1.as_deref(), Some(other.as_str()));
    // Fixed in Airtable, the record applies; once its whole state is read again (a poll),
    // the dead letters of both goals resolve themselves.
    e.admin().update_record(BASE, "Goals", &other, json!({ "Order": 5 })).expect("fix");
    wait_row(&db, "goals", &other, "t.sort_order = 5").await;
    let goals_table = mapping().table_id("goals").expect("goals");
    r.inbound.poll_table(goals_table).await.expect("poll");
    let resolved: Vec<String> = sqlx::query_scalar(
        "SELECT error_code FROM sync_dead_letter WHERE status = 'replayed' ORDER BY error_code",
    )
    .fetch_all(&db.pool)
    .await
    .expect("resolved");
    assert_eq!(resolved, vec!["INVALID_VALUE", "UNKNOWN_FIELD"]);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_dead_letter WHERE status = 'pending'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(pending, 2, "the payloads without a record stay for an operator");
    r.stop().await;
}

#[tokio::test]
async fn webhooks_are_refreshed_before_they_expire_and_recreated_after() {
    let db = test_db().await;
    let (e, r) = receiving(&db, |_| {}).await;
    let http = reqwest::Client::new();
    let hooks = || async {
        let v: Value = http
            .get(format!("{}/v0/bases/{BASE}/webhooks", e.url()))
            .bearer_auth(testkit::airtable::TOKEN)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        v["webhooks"].as_array().cloned().unwrap_or_default()
    };
    let expiry = |hooks: &[Value], id: &str| {
        hooks
            .iter()
            .find(|h| h["id"] == id)
            .and_then(|h| h["expirationTime"].as_str())
            .map(str::to_owned)
    };
    let users = hook_id(&db.pool, "users").await.expect("users hook");
    let before = expiry(&hooks().await, &users).expect("listed");

    // Three days on, less than five of the seven are left: refreshed, same hook.
    e.admin().advance_clock(chrono::Duration::days(3));
    assert!(!r.inbound.ensure_hook(HookKind::Users).await.expect("ensure"));
    let after = expiry(&hooks().await, &users).expect("listed");
    assert!(after > before, "{before} -> {after}");

    // Expired: a new hook replaces it, and everything is reconciled.
    e.admin().advance_clock(chrono::Duration::days(8));
    assert!(r.inbound.ensure_hook(HookKind::Users).await.expect("ensure"));
    let renewed = hook_id(&db.pool, "users").await.expect("users hook");
    assert_ne!(renewed, users);
    let listed = hooks().await;
    assert!(listed.iter().all(|h| h["id"] != users.as_str()), "the expired hook is deleted");
    assert!(listed
        .iter()
        .any(|h| h["id"] == renewed.as_str() && h["isHookEnabled"] == json!(true)));
    r.stop().await;
}

#[tokio::test]
async fn a_link_to_a_record_postgres_lacks_fetches_that_record_first() {
    let db = test_db().await;
    // The base hook reads once at start and then not for an hour: the new company reaches
    // Postgres only if the user's link brings it.
    let (e, r) = receiving(&db, |c| c.base_webhook_gap = Duration::from_secs(3600)).await;
    let company = e
        .admin()
        .create_records(
            BASE,
            "Companies",
            vec![json!({ "Name": "Gelinkt BV", "Code": "LINK", "Active": true })],
        )
        .expect("company");
    let company = rec(&company[0]);
    let user = e
        .admin()
        .create_records(
            BASE,
            "Users",
            vec![json!({ "Email": "link@example.com", "Name": "Link", "Company": [company], "Role": "user", "Status": "active", "Language": "nl" })],
        )
        .expect("user");
    wait_row(&db, "users", &rec(&user[0]), "t.company_id IS NOT NULL").await;
    let company_pg = pg_id(&db.pool, "companies", &company).await.expect("the company was fetched");
    let linked =
        text(&db.pool, "SELECT company_id::text FROM users WHERE email = 'link@example.com'").await;
    assert_eq!(linked, Some(company_pg.to_string()));
    assert_eq!(
        text(&db.pool, &format!("SELECT name FROM companies WHERE id = '{company_pg}'"))
            .await
            .as_deref(),
        Some("Gelinkt BV")
    );
    r.stop().await;
}
