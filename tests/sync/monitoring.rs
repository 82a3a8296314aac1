//! The monitoring against the real processes: every metric an alert rule or a dashboard
//! panel reads is exported by the `api` and `cdc` binaries (read from their live /metrics:
//! the API, the Airtable daemon, the Convex mirror's daemon), and a real Prometheus scrapes
//! them, evaluates the rules without error, and fires CdcDown when the daemon is killed.

use super::outbound::setup;
use airtable_emulator::RateLimits;
use serde_json::{json, Value};
use std::{collections::BTreeSet, path::Path, process::Stdio, time::Duration};
use testkit::{
    airtable::{emulator, mapping, schema_for, BASE},
    cargo_bin,
    cdc::{free_port, until_ok, wait_until},
    metrics_text, test_db,
};
use tokio::process::{Child, Command};

const LIMIT: Duration = Duration::from_secs(60);

fn docker(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker").join(path)
}

/// The metric names an expression reads (ours carry one of these prefixes; `up` is
/// Prometheus's own).
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    const OURS: [&str; 8] =
        ["cdc_", "sync_", "airtable_", "inbound_", "api_", "http_", "db_", "mirror_"];
    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if OURS.iter().any(|p| word.starts_with(p)) {
            into.insert(word.to_owned());
        }
    }
}

/// Every metric the alert rules and the dashboard read.
fn monitored() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(docker("prometheus/alerts.yml")).expect("rules"),
    )
    .expect("YAML");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            metric_names(rule["expr"].as_str().expect("expr"), &mut names);
        }
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(docker("grafana/dashboards/coach.json")).expect("dashboard"),
    )
    .expect("JSON");
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            metric_names(t["expr"].as_str().expect("expr"), &mut names);
        }
    }
    names
}

fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// A real Prometheus scraping the two processes every second, with the production rules;
/// `for:` is shortened to 2 s (the promtool unit tests hold the real durations).
fn prometheus(dir: &Path, port: u16, api: u16, cdc: u16, mirror: u16) -> Child {
    let rules = std::fs::read_to_string(docker("prometheus/alerts.yml")).expect("rules");
    let rules: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 2s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(dir.join("alerts.yml"), rules).expect("write rules");
    let config = format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
         rule_files: [{rules}]\n\
         scrape_configs:\n\
         \x20 - {{ job_name: api, static_configs: [{{ targets: ['127.0.0.1:{api}'] }}] }}\n\
         \x20 - {{ job_name: cdc, static_configs: [{{ targets: ['127.0.0.1:{cdc}'] }}] }}\n\
         \x20 - {{ job_name: cdc-convex, static_configs: [{{ targets: ['127.0.0.1:{mirror}'] }}] }}\n",
        rules = dir.join("alerts.yml").display()
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect(
            "prometheus must be installed (Debian: apt-get install prometheus; .ci/run does it)",
        )
}

#[tokio::test]
async fn every_monitored_metric_is_exported_and_prometheus_fires_cdc_down() {
    let db = test_db().await;
    let e = emulator(schema_for(&mapping(), |_| {}), RateLimits::off()).await;
    let (slot, publication) = setup(&db, &e).await;
    let (cdc_port, api_port, prom_port, mirror_port) =
        (free_port(), free_port(), free_port(), free_port());
    let mut cdc = Command::from({
        let mut c = testkit::airtable::cdc_run(
            &cargo_bin("cdc"),
            &db.url(),
            &slot,
            &publication,
            cdc_port,
            &e,
        );
        c.env("SYNC_FLUSH_MS", "50")
            .env("CDC_LAG_INTERVAL_MS", "200")
            .env("WEBHOOK_PUBLIC_URL", format!("http://127.0.0.1:{cdc_port}/webhooks/airtable"));
        c
    })
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .expect("cdc run");
    let _api = Command::new(cargo_bin("api"))
        .env("DATABASE_URL", db.url())
        .env("API_ADDR", format!("127.0.0.1:{api_port}"))
        .env("JWT_SECRET", "k3J9xQ2vLp8ZrT5wYb1NcH7mFd4sGa6E-test-only")
        .env("READ_THROUGH_WAIT_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("api");
    // The Convex mirror's daemon, on its own slot.
    let convex = testkit::convex::emulator(&testkit::convex::mirror(), false).await;
    let mirror_slot = format!("{slot}_mirror");
    let _mirror = Command::from(testkit::convex::convex_run(
        &cargo_bin("cdc"),
        &db.url(),
        &mirror_slot,
        mirror_port,
        &convex,
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .expect("cdc run --destination convex");
    let http = reqwest::Client::new();
    let [cdc_metrics, api_metrics, mirror_metrics] =
        [cdc_port, api_port, mirror_port].map(|p| format!("http://127.0.0.1:{p}/metrics"));
    wait_until(LIMIT, "the three processes serve /metrics", || async {
        http.get(&cdc_metrics).send().await.is_ok()
            && http.get(&api_metrics).send().await.is_ok()
            && http.get(&mirror_metrics).send().await.is_ok()
    })
    .await;

    // Traffic that records the histograms: an API request, a user made in Airtable (its
    // webhook ping, the users lane), the outbound backfill setup() queued.
    let login = json!({ "email": "nobody@example.com", "password": "not a password" });
    let _ =
        http.post(format!("http://127.0.0.1:{api_port}/api/auth/login")).json(&login).send().await;
    wait_until(LIMIT * 2, "the daemon's webhooks exist", || async {
        testkit::inbound::hook_id(&db.pool, "users").await.is_some()
    })
    .await;
    e.admin()
        .create_records(BASE, "Users", vec![json!({ "Email": "metriek@example.com", "Name": "Metriek", "Role": "user", "Status": "active", "Language": "nl" })])
        .expect("create");
    let wanted = monitored();
    assert!(wanted.len() >= 20, "{wanted:?}");
    until_ok(LIMIT, "every monitored metric is exported", || async {
        let mut have = exported(&metrics_text(&http, &cdc_metrics).await);
        have.extend(exported(&metrics_text(&http, &api_metrics).await));
        have.extend(exported(&metrics_text(&http, &mirror_metrics).await));
        let missing: Vec<_> = wanted.difference(&have).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not exported: {missing:?}"))
        }
    })
    .await;

    // A real Prometheus: both targets up, every rule evaluates without error.
    let dir = tempfile::tempdir().expect("tempdir");
    let _prom = prometheus(dir.path(), prom_port, api_port, cdc_port, mirror_port);
    let prom = format!("http://127.0.0.1:{prom_port}/api/v1");
    wait_until(LIMIT, "Prometheus scrapes the three targets", || async {
        get_json(&http, &format!("{prom}/targets")).await.is_some_and(|t| {
            let active = t["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
            active.len() == 3 && active.iter().all(|t| t["health"] == "up")
        })
    })
    .await;
    let rule_count = std::fs::read_to_string(docker("prometheus/alerts.yml"))
        .expect("rules")
        .matches("- alert: ")
        .count();
    wait_until(LIMIT, "every rule is evaluated, without error", || async {
        get_json(&http, &format!("{prom}/rules")).await.is_some_and(|r| {
            let rules: Vec<Value> = r["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            rules.len() == rule_count
                && rules.iter().all(|r| {
                    r["health"] == "ok"
                        && !r["lastEvaluation"].as_str().unwrap_or("0001").starts_with("0001")
                })
        })
    })
    .await;
    let alerts = |http: reqwest::Client, prom: String| async move {
        get_json(&http, &format!("{prom}/alerts"))
            .await
            .map(|a| a["data"]["alerts"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    };
    let firing = |all: &[Value], name: &str| {
        all.iter().any(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
    };
    let now = alerts(http.clone(), prom.clone()).await;
    assert!(!firing(&now, "CdcDown") && !firing(&now, "ApiDown"), "{now:?}");

    // The daemon dies: CdcDown fires.
    cdc.kill().await.expect("kill -9");
    wait_until(LIMIT, "CdcDown fires", || async {
        firing(&alerts(http.clone(), prom.clone()).await, "CdcDown")
    })
    .await;
    assert!(!firing(&alerts(http.clone(), prom.clone()).await, "ApiDown"), "the API is still up");
}
