//! A legacy base, as the PWA left it: every mapped table filled (≥ 5,000 records), links
//! everywhere, no `pg_id` field, formula fields the mapping ignores, and a handful of bad
//! records. What Postgres must hold after an import is known from the generator alone.

use crate::airtable::{mapping, BASE};
use airtable_emulator::Emulator;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The base's schema: the mapping's tables and fields without the merge field (the first
/// mapped field is primary), plus fields the mapping does not know.
pub fn schema() -> airtable_emulator::SchemaFile {
    let m = mapping();
    let mut s = m.airtable_schema(BASE, "Coach (legacy)");
    for t in s["bases"][0]["tables"].as_array_mut().expect("tables") {
        let fields = t["fields"].as_array_mut().expect("fields");
        fields.retain(|f| f["name"] != m.merge_field);
        // A link cannot be primary: a plain text field leads where the first is a link.
        if fields[0]["type"] == "multipleRecordLinks" {
            fields.insert(0, json!({ "name": "Label", "type": "singleLineText" }));
        }
        fields.push(json!({ "name": "Record summary", "type": "formula", "options": { "formula": "RECORD_ID()" } }));
        fields.push(json!({ "name": "Created", "type": "createdTime" }));
        t["primary_field"] = fields[0]["name"].clone();
    }
    serde_json::from_value(s).expect("schema")
}

/// Records each table must hold after the import (bad ones excluded), by Postgres table.
pub type Expected = BTreeMap<&'static str, usize>;

/// The record ids of what was created, per Airtable table name.
pub struct Legacy {
    pub expected: Expected,
    pub ids: BTreeMap<&'static str, Vec<String>>,
    /// The bad records: (Airtable table, record id, the fix that makes it importable).
    pub bad: Vec<(&'static str, String, Value)>,
}

fn create(e: &Emulator, table: &str, records: Vec<Value>) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in records.chunks(500) {
        let made = e.admin().create_records(BASE, table, chunk.to_vec()).expect(table);
        ids.extend(made.into_iter().map(|r| r["id"].as_str().expect("id").to_owned()));
    }
    ids
}

pub fn fill(e: &Emulator, users: usize) -> Legacy {
    let mut l = Legacy { expected: Expected::new(), ids: BTreeMap::new(), bad: Vec::new() };
    let put = |l: &mut Legacy, pg: &'static str, at: &'static str, records: Vec<Value>| {
        let n = records.len();
        let ids = create(e, at, records);
        l.expected.insert(pg, n);
        l.ids.insert(at, ids.clone());
        ids
    };
    let companies = put(&mut l, "companies", "Companies", (0..5).map(|i| json!({ "Name": format!("Company {i}"), "Code": format!("C{i}"), "Active": true })).collect());
    let goals = put(&mut l, "goals", "Goals", (0..8).map(|i| json!({ "Name": format!("Goal {i}"), "Description": format!("About goal {i}"), "Order": i })).collect());
    let cats = put(
        &mut l,
        "mindset_categories",
        "Mindset categories",
        (0..4).map(|i| json!({ "Name": format!("Category {i}"), "Order": i })).collect(),
    );
    let days = put(
        &mut l,
        "days_of_week",
        "Days of week",
        (1..=7).map(|i| json!({ "Name": format!("Day {i}"), "Day number": i })).collect(),
    );
    let methods = put(&mut l, "methods", "Methods", (0..20).map(|i| json!({
        "Name": format!("Method {i}"), "Kind": if i % 4 == 0 { "habit" } else { "method" },
        "Duration (minutes)": 5 + i, "Goals": [goals[i % 8]], "Mindset categories": [cats[i % 4]], "Order": i, "Active": i != 19,
    })).collect());
    let overt = put(&mut l, "overtuigingen", "Overtuigingen", (0..10).map(|i| json!({
        "Name": format!("Overtuiging {i}"), "Mindset category": [cats[i % 4]], "Goals": [goals[i % 8], goals[(i + 1) % 8]], "Level": 1 + i % 3,
    })).collect());
    put(&mut l, "prompts", "Prompts", (0..6).map(|i| json!({ "Key": format!("prompt.{i}"), "Category": if i < 3 { "prompt" } else { "config" }, "Title": format!("Prompt {i}"), "Body": format!("Text {i}") })).collect());
    let user_ids = put(&mut l, "users", "Users", (0..users).map(|i| json!({
        "Email": format!("user{i}@example.com"), "Name": format!("User {i}"), "Company": [companies[i % 5]],
        "Role": if i == 0 { "admin" } else { "user" }, "Status": "active", "Language": "nl", "Bonus points": i, "Level": 1 + i % 5,
    })).collect());
    let start = |i: usize| {
        chrono::NaiveDate::from_ymd_opt(2023, 1, 1).expect("date")
            + chrono::Duration::days((i % 300) as i64)
    };
    let programs = put(&mut l, "programs", "Programs", (0..users).map(|i| json!({
        "User": [user_ids[i]], "Name": format!("Program {i}"), "Start": start(i).to_string(), "End": (start(i) + chrono::Duration::days(20)).to_string(),
        "Goals": [goals[i % 8]], "Methods": [methods[i % 20], methods[(i + 3) % 20]], "Days": [days[i % 7]], "Motivation": format!("Because {i}"),
    })).collect());
    let planning = put(&mut l, "program_schedule", "Planning", (0..users * 10).map(|k| { let i = k / 10; json!({
        "Program": [programs[i]], "User": [user_ids[i]], "Date": (start(i) + chrono::Duration::days((k % 10) as i64)).to_string(),
        "Day": [days[k % 7]], "Methods": [methods[k % 20]], "Notes": format!("Plan {k}"),
    })}).collect());
    put(&mut l, "method_usage", "Method usage", (0..users * 15).map(|k| { let i = k / 15; json!({
        "User": [user_ids[i]], "Method": [methods[k % 20]], "Program": [programs[i]], "Planning": [planning[i * 10 + k % 10]],
        "Date": (start(i) + chrono::Duration::days((k % 10) as i64)).to_string(), "Remark": format!("Did {k}"),
    })}).collect());
    put(&mut l, "habit_usage", "Habit usage", (0..users * 5).map(|k| { let i = k / 5; json!({
        "User": [user_ids[i]], "Habit": [methods[(k % 5) * 4]], "Date": (start(i) + chrono::Duration::days((k % 5) as i64)).to_string(),
    })}).collect());
    let goals_p = put(&mut l, "personal_goals", "Personal goals", (0..users).map(|i| json!({
        "User": [user_ids[i]], "Name": format!("My goal {i}"), "Days": [days[i % 7]], "Coach feedback": format!("Well done {i}"),
    })).collect());
    put(&mut l, "personal_goal_usage", "Personal goal usage", (0..users).map(|i| json!({
        "User": [user_ids[i]], "Personal goal": [goals_p[i]], "Date": start(i).to_string(),
    })).collect());
    put(&mut l, "overtuiging_usage", "Overtuiging usage", (0..users).map(|i| json!({
        "User": [user_ids[i]], "Overtuiging": [overt[i % 10]], "Program": [programs[i]], "Date": start(i).to_string(),
    })).collect());
    put(
        &mut l,
        "persoonlijke_overtuigingen",
        "Persoonlijke overtuigingen",
        (0..users)
            .map(|i| {
                json!({
                    "User": [user_ids[i]], "Program": [programs[i]], "Name": format!("I can {i}"),
                })
            })
            .collect(),
    );

    // The bad records, one of each kind, each with the edit that fixes it.
    let dup = create(
        e,
        "Users",
        vec![
            json!({ "Email": "USER1@example.com", "Name": "Twin", "Status": "active", "Language": "nl" }),
        ],
    );
    l.bad.push(("Users", dup[0].clone(), json!({ "Email": "twin@example.com" })));
    let orphan = create(
        e,
        "Programs",
        vec![
            json!({ "User": [dup[0]], "Name": "Twin's", "Start": "2024-01-01", "End": "2024-01-10" }),
        ],
    );
    l.bad.push(("Programs", orphan[0].clone(), json!({})));
    let refused = create(
        e,
        "Habit usage",
        vec![json!({ "User": [user_ids[2]], "Habit": [methods[0]], "Date": start(2).to_string() })],
    );
    l.bad.push(("Habit usage", refused[0].clone(), json!({ "Date": "2030-01-01" })));
    let outside = create(
        e,
        "Planning",
        vec![json!({ "Program": [programs[3]], "User": [user_ids[4]], "Date": "2031-01-01" })],
    );
    l.bad.push(("Planning", outside[0].clone(), json!({ "User": [user_ids[3]] })));
    for (pg, n) in [("users", 1), ("programs", 1), ("habit_usage", 1), ("program_schedule", 1)] {
        *l.expected.get_mut(pg).expect(pg) += n;
    }
    l
}

/// Fixes the bad records in Airtable, as an admin would after reading the dead letters.
pub fn fix_bad_records(e: &Emulator, l: &Legacy) {
    for (table, id, fix) in &l.bad {
        if fix.as_object().is_some_and(|f| !f.is_empty()) {
            e.admin().update_record(BASE, table, id, fix.clone()).expect("fix");
        }
    }
}
