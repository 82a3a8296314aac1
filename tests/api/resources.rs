use serde_json::{json, Value};
use testkit::{
    api::{code, serve, user_with_password, Client, DEMO},
    test_db, TestDb,
};

const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const METHOD: &str = "00000000-0000-4000-8000-000000000401";
const GOAL: &str = "00000000-0000-4000-8000-000000000201";
const OVERTUIGING: &str = "00000000-0000-4000-8000-000000000501";

/// Two users, A (the demo user, with demo data) and B, signed in.
async fn two_users(db: &TestDb) -> (Client, Client) {
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    user_with_password(&db.pool, "b@example.com", "user").await;
    let base = serve(&db.url()).await;
    (
        Client::signed_in(&base, "demo@example.com").await.0,
        Client::signed_in(&base, "b@example.com").await.0,
    )
}

#[tokio::test]
async fn programs_with_progress_planning_and_methods() {
    let db = test_db().await;
    let (a, b) = two_users(&db).await;
    let (s, list) = a.get("/api/programs").await;
    assert_eq!(s.as_u16(), 200);
    let demo = &list[0];
    assert_eq!(demo["name"], "Rustig aan");
    assert_eq!(
        (demo["planned_sessions"].clone(), demo["completed_sessions"].clone()),
        (json!(29), json!(7)),
        "progress computed in SQL"
    );
    let id = demo["id"].as_str().expect("id").to_owned();

    let (s, p) = a.post("/api/programs", json!({ "name": "Volgende", "start_date": "2031-01-01", "end_date": "2031-02-01", "goal_ids": [GOAL], "method_ids": [METHOD] })).await;
    assert_eq!(s.as_u16(), 201, "{p}");
    assert_eq!(p["percent_complete"], 0.0);
    let new_id = p["id"].as_str().expect("id").to_owned();
    let (s, b_) = a
        .post("/api/programs", json!({ "start_date": "2031-01-15", "end_date": "2031-03-01" }))
        .await;
    assert_eq!((s.as_u16(), code(&b_)), (409, "conflict"), "programs of one user never overlap");
    let (s, b_) = a
        .post("/api/programs", json!({ "start_date": "2032-01-15", "end_date": "2032-01-01" }))
        .await;
    assert_eq!((s.as_u16(), code(&b_)), (422, "validation_failed"));
    let (s, b_) = a.post("/api/programs", json!({ "start_date": "2033-01-01", "end_date": "2033-02-01", "goal_ids": [uuid::Uuid::new_v4()] })).await;
    assert_eq!((s.as_u16(), code(&b_)), (422, "invalid_reference"));
    let (s, b_) = a.post("/api/programs", json!({ "start_date": "2033-01-01" })).await;
    assert_eq!((s.as_u16(), code(&b_)), (422, "validation_failed"), "{b_}");
    // B may start a program in the same dates: overlap is per user.
    assert_eq!(
        b.post("/api/programs", json!({ "start_date": "2031-01-01", "end_date": "2031-02-01" }))
            .await
            .0
            .as_u16(),
        201
    );

    let (s, p) = a.patch(&format!("/api/programs/{new_id}"), json!({ "name": "Hernoemd" })).await;
    assert_eq!(
        (s.as_u16(), p["name"].clone(), p["start_date"].clone()),
        (200, json!("Hernoemd"), json!("2031-01-01"))
    );
    let (s, methods) = a.get(&format!("/api/programs/{new_id}/methods")).await;
    assert_eq!((s.as_u16(), methods.as_array().map(Vec::len)), (200, Some(1)));

    let planning: String = sqlx::query_scalar(
        "SELECT id::text FROM program_schedule WHERE program_id = $1::uuid ORDER BY date LIMIT 1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .expect("planning");
    let (s, day) = a.get(&format!("/api/programs/{id}/schedule/{planning}")).await;
    assert_eq!((s.as_u16(), day["method_ids"].clone()), (200, json!([METHOD])));
    let outbox_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_outbox WHERE kind = 'progress'")
            .fetch_one(&db.pool)
            .await
            .expect("outbox");
    let (s, day) = a
        .patch(
            &format!("/api/programs/{id}/schedule/{planning}"),
            json!({ "method_ids": [METHOD, HABIT], "notes": "drukke dag" }),
        )
        .await;
    assert_eq!((s.as_u16(), day["notes"].clone()), (200, json!("drukke dag")));
    let outbox_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_outbox WHERE kind = 'progress'")
            .fetch_one(&db.pool)
            .await
            .expect("outbox");
    assert_eq!(outbox_after, outbox_before, "no intent: the sync derives progress from the change");

    // B sees none of A's program, and changes nothing of it.
    for path in [
        format!("/api/programs/{id}"),
        format!("/api/programs/{id}/methods"),
        format!("/api/programs/{id}/schedule/{planning}"),
    ] {
        let (s, body) = b.get(&path).await;
        assert_eq!((s.as_u16(), code(&body)), (404, "not_found"), "{path}");
    }
    assert_eq!(
        b.patch(&format!("/api/programs/{id}"), json!({ "name": "gekaapt" })).await.0.as_u16(),
        404
    );
    assert_eq!(
        b.patch(&format!("/api/programs/{id}/schedule/{planning}"), json!({ "notes": "x" }))
            .await
            .0
            .as_u16(),
        404
    );
    assert_eq!(b.delete(&format!("/api/programs/{id}")).await.0.as_u16(), 404);
    assert!(b
        .get("/api/programs")
        .await
        .1
        .as_array()
        .expect("list")
        .iter()
        .all(|p| p["id"] != id.as_str()));
    assert_eq!(a.get(&format!("/api/programs/{id}")).await.1["name"], "Rustig aan");

    assert_eq!(a.delete(&format!("/api/programs/{new_id}")).await.0.as_u16(), 204);
    assert_eq!(a.get(&format!("/api/programs/{new_id}")).await.0.as_u16(), 404);
    assert_eq!(a.get("/api/programs/not-a-uuid").await.0.as_u16(), 400);
}

#[tokio::test]
async fn habit_and_method_usage_by_date_range_and_program() {
    let db = test_db().await;
    let (a, b) = two_users(&db).await;
    let (s, row) =
        a.post("/api/habit-usage", json!({ "method_id": HABIT, "date": "2030-05-01" })).await;
    assert_eq!(s.as_u16(), 201, "{row}");
    let (s, again) =
        a.post("/api/habit-usage", json!({ "method_id": HABIT, "date": "2030-05-01" })).await;
    assert_eq!((s.as_u16(), again["id"].clone()), (200, row["id"].clone()), "idempotent");
    let (s, body) =
        a.post("/api/habit-usage", json!({ "method_id": METHOD, "date": "2030-05-01" })).await;
    assert_eq!((s.as_u16(), code(&body)), (422, "validation_failed"), "not a habit");
    let (s, list) = a.get("/api/habit-usage?from=2030-04-01&to=2030-05-31").await;
    assert_eq!((s.as_u16(), list.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(b.get("/api/habit-usage?from=2030-04-01&to=2030-05-31").await.1, json!([]));
    assert_eq!(a.get("/api/habit-usage?from=2030-05-31&to=2030-04-01").await.0.as_u16(), 422);
    assert_eq!(
        a.get("/api/habit-usage?from=2020-01-01&to=2030-01-01").await.0.as_u16(),
        422,
        "ranges are bounded"
    );
    assert_eq!(a.get("/api/habit-usage?from=yesterday").await.0.as_u16(), 400);
    assert_eq!(
        b.delete(&format!("/api/habit-usage?method_id={HABIT}&date=2030-05-01")).await.0.as_u16(),
        404,
        "B cannot untick A's habit"
    );
    assert_eq!(
        a.delete(&format!("/api/habit-usage?method_id={HABIT}&date=2030-05-01")).await.0.as_u16(),
        204
    );

    let program = a.get("/api/programs").await.1[0]["id"].as_str().expect("program").to_owned();
    let (s, u) = a.post("/api/method-usage", json!({ "method_id": METHOD, "program_id": program, "used_on": "2030-05-02", "remark": "fijn" })).await;
    assert_eq!(s.as_u16(), 201, "{u}");
    let (s, u2) =
        a.patch("/api/method-usage", json!({ "id": u["id"], "remark": "nog fijner" })).await;
    assert_eq!((s.as_u16(), u2["remark"].clone()), (200, json!("nog fijner")));
    assert_eq!(
        b.patch("/api/method-usage", json!({ "id": u["id"], "remark": "x" })).await.0.as_u16(),
        404
    );
    let (s, body) = b
        .post(
            "/api/method-usage",
            json!({ "method_id": METHOD, "program_id": program, "used_on": "2030-05-02" }),
        )
        .await;
    assert_eq!(
        (s.as_u16(), code(&body)),
        (404, "not_found"),
        "B cannot record usage in A's program"
    );
    let (s, latest) = a.get(&format!("/api/method-usage/by-program?program_id={program}")).await;
    assert_eq!(s.as_u16(), 200);
    assert_eq!(
        latest
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["method_id"] == METHOD)
            .map(|r| r["used_on"].clone()),
        Some(json!("2030-05-02"))
    );
    assert_eq!(
        b.get(&format!("/api/method-usage/by-program?program_id={program}")).await.1,
        json!([])
    );
    let progress = a.get(&format!("/api/programs/{program}")).await.1;
    assert_eq!(progress["completed_sessions"], 8);
}

#[tokio::test]
async fn personal_goals_overtuigingen_streaks_points_and_rewards() {
    let db = test_db().await;
    let (a, b) = two_users(&db).await;
    let (s, g) = a.post("/api/personal-goals", json!({ "name": "Lezen", "scheduled_day_ids": ["00000000-0000-4000-8000-000000000101"] })).await;
    assert_eq!(s.as_u16(), 201, "{g}");
    let gid = g["id"].as_str().expect("id").to_owned();
    assert_eq!(a.post("/api/personal-goals", json!({ "name": "   " })).await.0.as_u16(), 422);
    assert_eq!(
        a.post("/api/personal-goals", json!({ "name": "x", "extra": 1 })).await.0.as_u16(),
        422
    );
    let (s, g) = a.patch(&format!("/api/personal-goals/{gid}"), json!({ "archived": true })).await;
    assert_eq!((s.as_u16(), g["archived_at"].is_string()), (200, true));
    assert_eq!(
        b.patch(&format!("/api/personal-goals/{gid}"), json!({ "name": "x" })).await.0.as_u16(),
        404
    );
    assert_eq!(b.delete(&format!("/api/personal-goals/{gid}")).await.0.as_u16(), 404);
    assert_eq!(a.get("/api/personal-goals").await.1.as_array().map(Vec::len), Some(1));
    assert_eq!(b.get("/api/personal-goals").await.1, json!([]));
    assert_eq!(
        a.post(
            "/api/personal-goal-usage",
            json!({ "personal_goal_id": gid, "date": "2030-01-01" })
        )
        .await
        .0
        .as_u16(),
        201
    );
    assert_eq!(
        b.post(
            "/api/personal-goal-usage",
            json!({ "personal_goal_id": gid, "date": "2030-01-01" })
        )
        .await
        .0
        .as_u16(),
        404
    );
    assert_eq!(
        a.get("/api/personal-goal-usage?from=2030-01-01&to=2030-01-31")
            .await
            .1
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(b.get("/api/personal-goal-usage?from=2030-01-01&to=2030-01-31").await.1, json!([]));

    // Seven days in a row: a point a day, and the seventh earns the week bonus.
    let today = chrono::Utc::now().date_naive();
    let mut last = Value::Null;
    for back in (0..7).rev() {
        let date = today - chrono::Duration::days(back);
        let (s, r) = a
            .post("/api/overtuiging-usage", json!({ "overtuiging_id": OVERTUIGING, "date": date }))
            .await;
        assert_eq!(s.as_u16(), 201, "{r}");
        last = r;
    }
    assert_eq!(last["streak"]["current"], 7);
    assert_eq!(last["points_awarded"], 1 + 5);
    assert_eq!(last["bonus_points"], 6 + 6);
    let (s, again) = a
        .post("/api/overtuiging-usage", json!({ "overtuiging_id": OVERTUIGING, "date": today }))
        .await;
    assert_eq!(
        (s.as_u16(), again["points_awarded"].clone()),
        (200, json!(0)),
        "the same day twice earns nothing"
    );
    let (s, list) = a
        .get(&format!(
            "/api/overtuiging-usage?from={}&to={today}",
            today - chrono::Duration::days(10)
        ))
        .await;
    assert_eq!(
        (s.as_u16(), list["items"].as_array().map(Vec::len), list["streak"]["longest"].clone()),
        (200, Some(7), json!(7))
    );
    assert_eq!(b.get("/api/overtuiging-usage").await.1["items"], json!([]));

    let (s, own) = a
        .post("/api/persoonlijke-overtuigingen", json!({ "name": "Ik kan dit", "completed": true }))
        .await;
    assert_eq!((s.as_u16(), own["completed_at"].is_string()), (201, true));
    let program = a.get("/api/programs").await.1[0]["id"].clone();
    assert_eq!(
        b.post("/api/persoonlijke-overtuigingen", json!({ "name": "x", "program_id": program }))
            .await
            .0
            .as_u16(),
        404
    );
    assert_eq!(b.get("/api/persoonlijke-overtuigingen").await.1, json!([]));

    let (s, r) = a.get("/api/rewards").await;
    assert_eq!(s.as_u16(), 200, "{r}");
    assert_eq!(r["overtuiging_streak"], 7);
    assert_eq!(r["bonus_points"], 12);
    assert!(r["badges"].as_array().expect("badges").iter().any(|b| b == "week_streak"), "{r}");
    assert_eq!(
        r["total_points"],
        r["bonus_points"].as_i64().unwrap_or(0) + r["usage_points"].as_i64().unwrap_or(0)
    );
    let (s, rb) = b.get("/api/rewards").await;
    assert_eq!(
        (s.as_u16(), rb["total_points"].clone(), rb["badges"].clone()),
        (200, json!(0), json!([]))
    );
}

#[tokio::test]
async fn reference_data_and_company_lookup() {
    let db = test_db().await;
    let (a, _) = two_users(&db).await;
    let habits = a.get("/api/methods?kind=habit").await.1;
    assert_eq!(habits.as_array().map(Vec::len), Some(2));
    assert_eq!(a.get("/api/methods?kind=other").await.0.as_u16(), 422);
    assert_eq!(a.get(&format!("/api/methods/{METHOD}")).await.1["name"], "Ademhalingsoefening");
    assert_eq!(a.get(&format!("/api/methods/{}", uuid::Uuid::new_v4())).await.0.as_u16(), 404);
    assert_eq!(a.get("/api/goals").await.1.as_array().map(Vec::len), Some(3));
    let by_goal = a.get(&format!("/api/overtuigingen?goal_ids={GOAL}")).await.1;
    assert_eq!(
        by_goal.as_array().map(|v| v.iter().map(|o| o["id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(OVERTUIGING)])
    );
    assert_eq!(a.get("/api/overtuigingen").await.1.as_array().map(Vec::len), Some(2));
    assert_eq!(a.get("/api/overtuigingen?goal_ids=nope").await.0.as_u16(), 422);
    // Soft-deleted reference rows disappear.
    sqlx::query("UPDATE methods SET deleted_at = now() WHERE id = $1::uuid")
        .bind(HABIT)
        .execute(&db.pool)
        .await
        .expect("soft delete");
    assert_eq!(a.get("/api/methods?kind=habit").await.1.as_array().map(Vec::len), Some(1));

    let anon = Client::new(&a.base);
    assert_eq!(anon.get("/api/methods").await.0.as_u16(), 401);
    let (s, c) = anon.get("/api/companies/lookup?code=demo").await;
    assert_eq!((s.as_u16(), c["name"].clone()), (200, json!("Demo BV")));
    assert_eq!(anon.get("/api/companies/lookup?code=NOPE").await.0.as_u16(), 404);
    assert_eq!(anon.get("/api/companies/lookup").await.0.as_u16(), 400);
}

/// Values the sync could not carry to Airtable are refused at the door (issue: a year past
/// 9999 answered 201 and then wedged the outbound stream).
#[tokio::test]
async fn dates_and_texts_the_sync_cannot_carry_are_refused() {
    let db = test_db().await;
    let (a, _) = two_users(&db).await;
    for date in ["+10000-01-01", "-0044-03-15", "1899-12-31", "3000-01-01"] {
        let (s, body) =
            a.post("/api/habit-usage", json!({ "method_id": HABIT, "date": date })).await;
        assert_eq!((s.as_u16(), code(&body)), (422, "validation_failed"), "habit {date}: {body}");
        assert!(body.to_string().contains("1900-01-01 to 2999-12-31"), "names the range: {body}");
        let (s, body) =
            a.post("/api/programs", json!({ "start_date": date, "end_date": "2031-02-01" })).await;
        assert_eq!((s.as_u16(), code(&body)), (422, "validation_failed"), "program {date}: {body}");
    }
    let (s, body) = a
        .post("/api/programs", json!({ "start_date": "2040-01-01", "end_date": "-0044-03-15" }))
        .await;
    assert_eq!((s.as_u16(), code(&body)), (422, "validation_failed"), "{body}");
    // The edges themselves are accepted.
    let (s, body) =
        a.post("/api/habit-usage", json!({ "method_id": HABIT, "date": "1900-01-01" })).await;
    assert_eq!(s.as_u16(), 201, "{body}");
    let (s, body) =
        a.post("/api/habit-usage", json!({ "method_id": HABIT, "date": "2999-12-31" })).await;
    assert_eq!(s.as_u16(), 201, "{body}");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM habit_usage WHERE date < '1900-01-01' OR date > '2999-12-31'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(stored, 0, "nothing outside the range was written");
    // Text past Airtable's limit: its own field named (the body limit is raised to reach it).
    let db2 = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db2.pool).await.expect("demo");
    user_with_password(&db2.pool, "demo@example.com", "user").await;
    let base = testkit::api::serve_with(&db2.url(), |c| c.max_body_bytes = 1 << 20).await;
    let c = Client::signed_in(&base, "demo@example.com").await.0;
    let long = "x".repeat(schema::limits::MAX_TEXT_CHARS + 1);
    let (s, body) = c
        .post(
            "/api/programs",
            json!({ "start_date": "2041-01-01", "end_date": "2041-02-01", "motivation": long }),
        )
        .await;
    assert_eq!((s.as_u16(), code(&body)), (422, "validation_failed"), "{body}");
    assert!(body.to_string().contains("longer than 100000"), "{body}");
}
