//! The alert rules pass `promtool check rules` and their unit tests (`promtool test rules`:
//! each alert fires on synthetic series and clears); the dashboard is valid JSON whose
//! every panel queries something.

use std::path::{Path, PathBuf};
use tokio::process::Command;

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/prometheus")
}

async fn promtool(args: &[&str]) -> String {
    let out =
        Command::new("promtool").args(args).current_dir(prometheus_dir()).output().await.expect(
            "promtool must be installed (Debian: apt-get install prometheus; .ci/run does it)",
        );
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[tokio::test]
async fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]).await;
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(prometheus_dir().join("alerts.yml")).expect("alerts.yml"),
    )
    .expect("YAML");
    let alerts: Vec<&serde_yaml::Value> = rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .collect();
    assert!(checked.contains(&format!("SUCCESS: {} rules found", alerts.len())), "{checked}");
    for a in &alerts {
        let name = a["alert"].as_str().expect("an alert");
        assert!(
            a["annotations"]["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: summary"
        );
        let runbook = a["annotations"]["runbook_url"].as_str().expect("runbook_url");
        let anchor =
            runbook.strip_prefix("docs/runbook.md#").unwrap_or_else(|| panic!("{name}: {runbook}"));
        assert!(
            runbook_anchors().contains(&anchor.to_owned()),
            "{name}: no section #{anchor} in docs/runbook.md"
        );
    }
    let tested = promtool(&["test", "rules", "alerts_test.yml"]).await;
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a case where it fires and one where it is cleared.
    let cases: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(prometheus_dir().join("alerts_test.yml")).expect("test file"),
    )
    .expect("YAML");
    let checks: Vec<&serde_yaml::Value> = cases["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_sequence().expect("alert_rule_test"))
        .collect();
    for a in &alerts {
        let name = a["alert"].as_str().expect("name");
        let of = |firing: bool| {
            checks.iter().any(|c| {
                c["alertname"].as_str() == Some(name)
                    && c["exp_alerts"].as_sequence().is_some_and(|e| e.is_empty() != firing)
            })
        };
        assert!(of(true), "{name} is never tested firing");
        assert!(of(false), "{name} is never tested cleared");
    }
}

/// The GitHub-style anchors of docs/runbook.md's headings.
pub fn runbook_anchors() -> Vec<String> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbook.md"))
            .expect("docs/runbook.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn the_dashboard_is_valid_and_every_panel_queries_something() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/grafana/dashboards/coach.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty()
                && targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
            "{}",
            p["title"]
        );
        assert_eq!(p["datasource"]["uid"], "prometheus", "the provisioned data source");
    }
}
