//! Day one from nothing: `cdc init`, as the owner, makes the logins each process runs as
//! (passwords checked by the server), and `cdc run` under its least-privilege login refuses
//! to start without the publication, naming the command and the role that makes it.

use sqlx::{Connection, PgConnection};
use std::{process::Stdio, time::Duration};
use testkit::{cargo_bin, cdc::free_port, cdc::wait_until, cdc_output, Cluster, ClusterOptions};
use tokio::process::Command;

const API_PASSWORD: &str = "api 'secret' pw";
const CDC_PASSWORD: &str = "cdc-secret-pw";

/// `cdc ARGS` with the environment of a deploy; (success, stdout, stderr).
async fn cdc(url: &str, args: &[&str]) -> (bool, String, String) {
    let env = [
        ("DATABASE_URL", url),
        ("API_DB_PASSWORD", API_PASSWORD),
        ("CDC_DB_PASSWORD", CDC_PASSWORD),
        ("CDC_SLOT", "day_one"),
        ("API_DB_USER", ""),
        ("CDC_DB_USER", ""),
    ];
    cdc_output(args, &env).await
}

fn url(cluster: &Cluster, user: &str, password: &str) -> String {
    let password: String = password.bytes().map(|b| format!("%{b:02X}")).collect();
    format!("postgres://{user}:{password}@127.0.0.1:{}/coach", cluster.port())
}

#[tokio::test]
async fn cdc_init_makes_the_logins_and_cdc_run_needs_the_publication_made_by_the_owner() {
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
        .await
        .expect("join")
        .expect("cluster");
    // Passwords count for every role but the harness's superuser.
    let hba = cluster.data_dir().join("pg_hba.conf");
    std::fs::write(
        &hba,
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .expect("pg_hba.conf");
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await.expect("connect");
    sqlx::query("SELECT pg_reload_conf()").execute(&mut admin).await.expect("reload");
    sqlx::query("CREATE DATABASE coach").execute(&mut admin).await.expect("create db");
    let owner = cluster.url("coach");

    let (ok, out, err) = cdc(&owner, &["init"]).await;
    assert!(ok, "cdc init failed:\n{out}\n{err}");
    assert!(out.contains("created login coach_api_login in coach_api\n"), "{out}");
    assert!(out.contains("created login coach_sync_login in coach_sync (REPLICATION)\n"), "{out}");
    assert!(out.contains("created publication coach_pub\n"), "{out}");
    let (ok, out, err) = cdc(&owner, &["init"]).await;
    assert!(ok, "a second cdc init failed:\n{out}\n{err}");
    assert!(
        out.contains("updated login coach_api_login") && out.contains("nothing to apply"),
        "{out}"
    );
    let stored: String =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = 'coach_api_login'")
            .fetch_one(&mut admin)
            .await
            .expect("verifier");
    assert!(stored.starts_with("SCRAM-SHA-256$"), "only a verifier is stored");

    // The API's login: its password, its group's rights and no more.
    assert!(PgConnection::connect(&url(&cluster, "coach_api_login", "wrong")).await.is_err());
    let mut api = PgConnection::connect(&url(&cluster, "coach_api_login", API_PASSWORD))
        .await
        .expect("api login");
    sqlx::query("SELECT count(*) FROM programs").execute(&mut api).await.expect("api reads");
    let denied = sqlx::query("INSERT INTO methods (name) VALUES ('x')")
        .execute(&mut api)
        .await
        .expect_err("api may not write methods");
    assert_eq!(denied.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"));
    let replication: bool = sqlx::query_scalar(
        "SELECT rolreplication FROM pg_roles WHERE rolname = 'coach_sync_login'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("role");
    assert!(replication, "the daemon's login has REPLICATION");

    // Without the publication, the daemon's login refuses to start and names the fix.
    let mut coach = PgConnection::connect(&owner).await.expect("connect");
    sqlx::query("DROP PUBLICATION coach_pub").execute(&mut coach).await.expect("drop publication");
    let daemon_url = url(&cluster, "coach_sync_login", CDC_PASSWORD);
    let (ok, out, err) = cdc(&daemon_url, &["run", "--destination", "null"]).await;
    assert!(!ok, "cdc run started without a publication it may not create:\n{out}");
    assert!(err.contains("run `cdc publication sync` as the schema owner"), "{err}");

    // Made by the owner, the daemon runs under its login, and stops cleanly.
    let (ok, out, err) = cdc(&owner, &["publication", "sync"]).await;
    assert!(ok, "{out}\n{err}");
    let port = free_port();
    let mut run = Command::new(cargo_bin("cdc"))
        .args(["run", "--destination", "null"])
        .env("DATABASE_URL", &daemon_url)
        .env("CDC_SLOT", "day_one")
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cdc run");
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "cdc run ready under its login", || async {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let pid = run.id().expect("pid");
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    let status = tokio::time::timeout(Duration::from_secs(30), run.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert!(status.success(), "SIGTERM ends cdc run with 0: {status}");
}
