//! The planning made with a program and kept in line with it.

use chrono::{Datelike, Duration, NaiveDate, Utc, Weekday};
use serde_json::{json, Value};
use testkit::{
    api::{code, serve, user_with_password, Client, DEMO},
    test_db,
};

const METHOD: &str = "00000000-0000-4000-8000-000000000401";
const OTHER: &str = "00000000-0000-4000-8000-000000000402";
const HABIT: &str = "00000000-0000-4000-8000-000000000403";
const MONDAY: &str = "00000000-0000-4000-8000-000000000101";
const WEDNESDAY: &str = "00000000-0000-4000-8000-000000000103";
const FRIDAY: &str = "00000000-0000-4000-8000-000000000105";
const DEMO_PROGRAM: &str = "00000000-0000-4000-8000-000000000801";

/// Every date in [from, to] on one of `days`, computed here, apart from the SQL.
fn dates(from: NaiveDate, to: NaiveDate, days: &[Weekday]) -> Vec<String> {
    from.iter_days()
        .take_while(|d| *d <= to)
        .filter(|d| days.contains(&d.weekday()))
        .map(|d| d.to_string())
        .collect()
}

fn day_of(d: &Value) -> (String, Value) {
    (d["date"].as_str().expect("date").to_owned(), d["method_ids"].clone())
}

async fn schedule(c: &Client, program: &str) -> Vec<Value> {
    let (s, body) = c.get(&format!("/api/programs/{program}/schedule")).await;
    assert_eq!(s.as_u16(), 200, "{body}");
    body.as_array().expect("a list").clone()
}

#[tokio::test]
async fn a_program_comes_with_its_planning_and_a_change_replans_the_future() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    user_with_password(&db.pool, "b@example.com", "user").await;
    let base = serve(&db.url()).await;
    let a = Client::signed_in(&base, "demo@example.com").await.0;
    let b = Client::signed_in(&base, "b@example.com").await.0;

    // A program in the future: every Monday and Wednesday of January 2031.
    let (start, end) = (
        NaiveDate::from_ymd_opt(2031, 1, 1).expect("d"),
        NaiveDate::from_ymd_opt(2031, 1, 31).expect("d"),
    );
    let (s, p) = a
        .post("/api/programs", json!({ "start_date": start, "end_date": end, "method_ids": [METHOD], "day_of_week_ids": [MONDAY, WEDNESDAY] }))
        .await;
    assert_eq!(s.as_u16(), 201, "{p}");
    let id = p["id"].as_str().expect("id").to_owned();
    let expected = dates(start, end, &[Weekday::Mon, Weekday::Wed]);
    assert_eq!(expected.len(), 9);
    assert_eq!(
        p["planned_sessions"],
        json!(expected.len()),
        "progress counts the planning at once"
    );
    let days = schedule(&a, &id).await;
    assert_eq!(days.iter().map(|d| day_of(d).0).collect::<Vec<_>>(), expected);
    assert!(days.iter().all(|d| d["method_ids"] == json!([METHOD])));
    assert!(days.iter().all(|d| d["day_of_week_id"]
        == json!(if NaiveDate::parse_from_str(d["date"].as_str().expect("date"), "%Y-%m-%d")
            .expect("date")
            .weekday()
            == Weekday::Mon
        {
            MONDAY
        } else {
            WEDNESDAY
        })));

    // A Monday with usage, then the weekdays change to Monday and Friday.
    let used = days.iter().find(|d| d["date"] == "2031-01-06").expect("a Monday");
    let (s, _) = a
        .post("/api/method-usage", json!({ "method_id": METHOD, "program_id": id, "program_schedule_id": used["id"], "used_on": "2031-01-06" }))
        .await;
    assert_eq!(s.as_u16(), 201);
    let (s, _) = a
        .patch(&format!("/api/programs/{id}"), json!({ "day_of_week_ids": [MONDAY, FRIDAY] }))
        .await;
    assert_eq!(s.as_u16(), 200);
    let days = schedule(&a, &id).await;
    let expected = dates(start, end, &[Weekday::Mon, Weekday::Fri]);
    assert_eq!(
        days.iter().map(|d| day_of(d).0).collect::<Vec<_>>(),
        expected,
        "Wednesdays gone, Fridays planned"
    );
    let kept = days.iter().find(|d| d["date"] == "2031-01-06").expect("the used Monday");
    assert_eq!(kept["id"], used["id"], "the day with usage is the same row");

    // One Friday edited by the user; then the program's methods change.
    let edited = days.iter().find(|d| d["date"] == "2031-01-10").expect("a Friday")["id"].clone();
    let edited = edited.as_str().expect("id");
    let (s, _) = a
        .patch(&format!("/api/programs/{id}/schedule/{edited}"), json!({ "method_ids": [HABIT] }))
        .await;
    assert_eq!(s.as_u16(), 200);
    let (s, p) = a.patch(&format!("/api/programs/{id}"), json!({ "method_ids": [OTHER] })).await;
    assert_eq!(s.as_u16(), 200);
    let days = schedule(&a, &id).await;
    for d in &days {
        let (date, methods) = day_of(d);
        let want = match date.as_str() {
            "2031-01-06" => json!([METHOD]), // has usage: untouched
            "2031-01-10" => json!([HABIT]),  // the user's own
            _ => json!([OTHER]),
        };
        assert_eq!(methods, want, "{date}");
    }
    assert_eq!(p["planned_sessions"], json!(expected.len()));

    // Shorter: the days past the new end go, except the one with usage.
    let (s, _) = a.patch(&format!("/api/programs/{id}"), json!({ "end_date": "2031-01-05" })).await;
    assert_eq!(s.as_u16(), 200);
    let left: Vec<String> = schedule(&a, &id).await.iter().map(|d| day_of(d).0).collect();
    let mut want = dates(
        start,
        NaiveDate::from_ymd_opt(2031, 1, 5).expect("d"),
        &[Weekday::Mon, Weekday::Fri],
    );
    want.push("2031-01-06".into());
    assert_eq!(left, want);

    // Scoped: B sees none of it; an unknown program is 404; no weekdays is an empty plan.
    let (s, body) = b.get(&format!("/api/programs/{id}/schedule")).await;
    assert_eq!((s.as_u16(), code(&body)), (404, "not_found"));
    let (s, _) = a.get(&format!("/api/programs/{}/schedule", uuid::Uuid::new_v4())).await;
    assert_eq!(s.as_u16(), 404);
    let (s, p) = a
        .post("/api/programs", json!({ "start_date": "2032-01-01", "end_date": "2032-01-31" }))
        .await;
    assert_eq!(s.as_u16(), 201);
    assert!(schedule(&a, p["id"].as_str().expect("id")).await.is_empty());
}

#[tokio::test]
async fn a_running_program_keeps_its_past() {
    let db = test_db().await;
    sqlx::raw_sql(DEMO).execute(&db.pool).await.expect("demo");
    user_with_password(&db.pool, "demo@example.com", "user").await;
    let base = serve(&db.url()).await;
    let a = Client::signed_in(&base, "demo@example.com").await.0;
    let today: NaiveDate =
        sqlx::query_scalar("SELECT current_date").fetch_one(&db.pool).await.expect("today");
    assert!((today - Utc::now().date_naive()).num_days().abs() <= 1);
    // The demo program plans every day (written before this feature); its weekdays are
    // Monday and Wednesday. A new end date replans from today on only.
    let before = schedule(&a, DEMO_PROGRAM).await;
    let end = today + Duration::days(30);
    let (s, _) =
        a.patch(&format!("/api/programs/{DEMO_PROGRAM}"), json!({ "end_date": end })).await;
    assert_eq!(s.as_u16(), 200);
    let after = schedule(&a, DEMO_PROGRAM).await;
    let past = |days: &[Value]| {
        days.iter()
            .filter(|d| d["date"].as_str().expect("date") < today.to_string().as_str())
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(past(&after), past(&before), "days before today stay as they were");
    assert_eq!(past(&before).len(), 7);
    let future: Vec<String> = after
        .iter()
        .map(|d| day_of(d).0)
        .filter(|d| d.as_str() >= today.to_string().as_str())
        .collect();
    assert_eq!(future, dates(today, end, &[Weekday::Mon, Weekday::Wed]));
}
