//! The local stack on embedded defaults: `cargo run --bin stack`.
//!
//! - Postgres: DATABASE_URL when set, else a throwaway cluster (wal_level=logical) that lives
//!   until Ctrl-C. Migrated, with demo data.
//! - The API on API_ADDR (default 127.0.0.1:8080).
//! - Airtable: when AIRTABLE_TOKEN is unset, the local emulator (bases and tables appear as
//!   they are written to; its admin surface shows everything at /_admin/state).

use airtable_emulator::{Emulator, EmulatorConfig};
use anyhow::Context;
use schema::postgres::{self, migrate, PgConfig};
use testkit::{Cluster, ClusterOptions};

const DEMO_SQL: &str = include_str!("demo.sql");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::telemetry::init();
    // Keep the cluster alive for the whole run; dropping it stops and deletes it.
    let (_cluster, database_url) = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => (None, url),
        _ => {
            println!(
                "DATABASE_URL is unset: starting a throwaway PostgreSQL (wal_level=logical)..."
            );
            let cluster = tokio::task::spawn_blocking(|| Cluster::start(ClusterOptions::default()))
                .await?
                .context("cannot start a throwaway PostgreSQL; is postgresql installed?")?;
            let admin = cluster.url("postgres");
            let pool = sqlx::PgPool::connect(&admin).await?;
            sqlx::query("CREATE DATABASE coach").execute(&pool).await?;
            pool.close().await;
            let url = cluster.url("coach");
            (Some(cluster), url)
        }
    };

    let pg = PgConfig::new(database_url.clone(), "stack");
    let pool = postgres::connect(&pg).await.context("cannot connect to Postgres")?;
    for m in migrate::run(&pool).await? {
        println!("applied migration {} {}", m.version, m.description);
    }
    sqlx::raw_sql(DEMO_SQL).execute(&pool).await.context("loading demo data")?;
    pool.close().await;

    // Keep the emulator alive for the whole run, like the cluster.
    let emulator = match std::env::var("AIRTABLE_TOKEN") {
        Ok(t) if !t.is_empty() => None,
        _ => {
            let token = format!("patLOCAL{}", uuid::Uuid::new_v4().simple());
            Some(Emulator::start(EmulatorConfig::new(token), "127.0.0.1:0".parse()?).await?)
        }
    };

    let api_addr = std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let api_config = api::Config {
        addr: api_addr.parse().context("API_ADDR must be host:port")?,
        postgres: PgConfig::new(database_url.clone(), "api"),
    };
    let app = api::Application::build(api_config).await?;
    let api_url = format!(
        "http://{}:{}",
        api_addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h),
        app.port()
    );

    println!();
    println!("  Postgres   {}", PgConfig::new(database_url, "stack").redacted_url());
    println!("  API        {api_url}/api/health   (ready: {api_url}/api/ready)");
    match &emulator {
        Some(e) => {
            println!("  Airtable   {} (local emulator; AIRTABLE_TOKEN={})", e.url(), e.token());
            println!("             everything it holds: {}/_admin/state", e.url());
        }
        None => println!("  Airtable   AIRTABLE_TOKEN is set: using AIRTABLE_API_URL (default https://api.airtable.com)"),
    }
    println!();
    println!(
        "Press Ctrl-C to stop{}.",
        if _cluster.is_some() { " (the throwaway database is deleted)" } else { "" }
    );
    app.run_until_stopped().await?;
    Ok(())
}
