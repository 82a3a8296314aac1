//! `docker compose up` from one `.env`: the file is valid (docker-compose's own check), every
//! variable it reads is in `.env.example` with its meaning, and every variable the binaries
//! refuse to start without is set for the service that runs them.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};
use testkit::cargo_bin;
use tokio::process::Command;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

/// `.env.example` with every empty value filled (as an operator would).
fn filled_env(dir: &Path) -> PathBuf {
    let example = std::fs::read_to_string(docker_dir().join(".env.example")).expect(".env.example");
    let filled: String = example
        .lines()
        .map(|l| match l.strip_suffix('=') {
            Some(name) if !l.starts_with('#') => {
                format!("{name}=placeholder-{}\n", name.to_lowercase())
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let path = dir.join(".env");
    std::fs::write(&path, filled).expect("write .env");
    path
}

/// The variables `.env.example` lists, each with the comment line above it.
fn documented() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(docker_dir().join(".env.example")).expect(".env.example");
    let mut out = BTreeMap::new();
    let mut comment = String::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment = c.trim().to_owned();
        } else if let Some((name, _)) = line.split_once('=') {
            out.insert(name.to_owned(), std::mem::take(&mut comment));
        }
    }
    out
}

/// `docker-compose config`: the file as Compose resolves it from the filled `.env`.
async fn resolved() -> serde_yaml::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = filled_env(dir.path());
    let out = Command::new("docker-compose")
        .arg("--env-file")
        .arg(&env)
        .arg("-f")
        .arg(docker_dir().join("compose.yml"))
        .arg("config")
        .output()
        .await
        .expect("docker-compose must be installed (Debian: apt-get install docker-compose; .ci/run does it)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).expect("YAML")
}

#[tokio::test]
async fn the_compose_file_is_valid_and_every_variable_it_reads_is_documented() {
    let config = resolved().await;
    let services = config["services"].as_mapping().expect("services");
    for name in ["postgres", "init", "api", "cdc", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    let raw = std::fs::read_to_string(docker_dir().join("compose.yml")).expect("compose.yml");
    let used: BTreeSet<String> = raw
        .split("${")
        .skip(1)
        .filter_map(|s| s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next())
        .map(str::to_owned)
        .collect();
    let documented = documented();
    for var in &used {
        let meaning = documented.get(var).unwrap_or_else(|| panic!("{var} is not in .env.example"));
        assert!(!meaning.is_empty(), "{var} has no one-line meaning in .env.example");
    }
    let extra: Vec<_> =
        documented.keys().filter(|v| !used.contains(*v) && *v != "COMPOSE_PROJECT_NAME").collect();
    assert!(extra.is_empty(), ".env.example lists variables nothing reads: {extra:?}");
    // Each process under its own least-privilege login; only the init step is the owner.
    let url = |s: &str| {
        services[s]["environment"]["DATABASE_URL"].as_str().unwrap_or_default().to_owned()
    };
    assert!(
        url("api").starts_with("postgres://coach_api_login:placeholder-api_db_password@"),
        "{}",
        url("api")
    );
    assert!(
        url("cdc").starts_with("postgres://coach_sync_login:placeholder-cdc_db_password@"),
        "{}",
        url("cdc")
    );
    assert!(
        url("init").starts_with("postgres://postgres:placeholder-postgres_password@"),
        "{}",
        url("init")
    );
    for s in ["api", "cdc"] {
        assert_eq!(
            services[s]["depends_on"]["init"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{s} starts after the init step"
        );
    }
}

/// The variables a command refuses to start without, found by running it: each refusal
/// names one ("X is not set"); set it and run again.
async fn required(bin: &Path, args: &[&str]) -> BTreeSet<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..10 {
        let mut cmd = Command::new(bin);
        cmd.args(args).env_clear().envs(&env).env("LOG_FORMAT", "text").kill_on_drop(true);
        let Ok(out) = tokio::time::timeout(Duration::from_secs(5), cmd.output()).await else {
            break; // past its configuration: it is trying to connect
        };
        let out = out.expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        let Some(missing) = err.split(" is not set").next().filter(|_| err.contains(" is not set"))
        else {
            assert!(
                !out.status.success() || env.is_empty(),
                "{args:?} ran with placeholders: {err}"
            );
            break;
        };
        let var = missing
            .rsplit(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !var.is_empty() && !env.contains_key(&var),
            "{args:?}: cannot read the variable in {err}"
        );
        let value = if var.ends_with("_URL") {
            "postgres://nobody:nothing@127.0.0.1:9/nowhere".to_owned()
        } else {
            "placeholder-0123456789-abcdefghijklmnopqrstuvwxyz".to_owned()
        };
        env.insert(var, value);
    }
    env.into_keys().collect()
}

#[tokio::test]
async fn every_variable_the_binaries_require_is_wired() {
    let config = resolved().await;
    let (api, cdc) = (cargo_bin("api"), cargo_bin("cdc"));
    let mut all = BTreeMap::new();
    for (service, bin, args) in
        [("api", &api, vec![]), ("cdc", &cdc, vec!["run"]), ("init", &cdc, vec!["init"])]
    {
        let needs = required(bin, &args).await;
        assert!(needs.contains("DATABASE_URL"), "{service}: found {needs:?}");
        let env = config["services"][service]["environment"].as_mapping().expect("environment");
        for var in &needs {
            let value = env.get(var.as_str()).and_then(|v| v.as_str()).unwrap_or_default();
            assert!(!value.is_empty(), "{service} needs {var}, which compose does not set");
        }
        all.insert(service, needs);
    }
    // What the binaries need beyond the URL, named so a change shows here too.
    assert!(all["api"].contains("JWT_SECRET"), "{all:?}");
    assert!(
        all["cdc"].contains("AIRTABLE_TOKEN") && all["cdc"].contains("AIRTABLE_BASE_ID"),
        "{all:?}"
    );
}
