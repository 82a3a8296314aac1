//! The local stack on embedded defaults: `cargo run --bin stack`.
//!
//! - Postgres: DATABASE_URL when set, else a throwaway cluster (wal_level=logical) that lives
//!   until Ctrl-C. Migrated, with demo data.
//! - Airtable: when AIRTABLE_TOKEN is unset, the local emulator with the mapping's tables and
//!   the demo reference data; else AIRTABLE_API_URL / AIRTABLE_BASE_ID.
//! - The sync daemon, streaming Postgres into Airtable and applying Airtable's edits to
//!   Postgres (webhook pings on METRICS_ADDR, metrics there too).
//! - The API on API_ADDR (default 127.0.0.1:8080).

use airtable_emulator::{Emulator, EmulatorConfig, SchemaFile};
use anyhow::Context;
use cdc::{
    airtable::AirtableConfig,
    config::CdcConfig,
    inbound::InboundConfig,
    run::{airtable_sides, shutdown_on_signals, Daemon},
};
use schema::postgres::{self, migrate, PgConfig};
use std::{sync::Arc, time::Duration};
use testkit::{Cluster, ClusterOptions};

const DEMO_SQL: &str = include_str!("demo.sql");
const LOCAL_BASE: &str = "appCOACHLOCAL0001";
const DEMO_PASSWORD: &str = "demo-password";

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
            let admin = sqlx::PgPool::connect(&cluster.url("postgres")).await?;
            sqlx::query("CREATE DATABASE coach").execute(&admin).await?;
            admin.close().await;
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
    let mapping = Arc::new(cdc::config::load_mapping().map_err(anyhow::Error::msg)?);

    // Airtable: the emulator, shaped by the mapping, holding the demo reference data.
    let (emulator, airtable) = match std::env::var("AIRTABLE_TOKEN") {
        Ok(t) if !t.is_empty() => (None, AirtableConfig::from_env()?),
        _ => {
            let token = format!("patLOCAL{}", uuid::Uuid::new_v4().simple());
            let mut config = EmulatorConfig::new(token.clone());
            let schema: SchemaFile =
                serde_json::from_value(mapping.airtable_schema(LOCAL_BASE, "Coach (local)"))?;
            config.schema = Some(schema);
            let e = Emulator::start(config, "127.0.0.1:0".parse()?).await?;
            // A fresh emulator knows no record: forget old record ids, mirror the reference
            // data (what the inbound reconcile does against a real base).
            sqlx::query("DELETE FROM airtable_id_map").execute(&pool).await?;
            testkit::airtable::mirror_reference_data(&e, LOCAL_BASE, &pool, &mapping).await;
            let airtable = AirtableConfig::new(e.url(), token, LOCAL_BASE);
            (Some(e), airtable)
        }
    };
    let cdc_config = CdcConfig {
        metrics_addr: std::env::var("METRICS_ADDR")
            .unwrap_or_else(|_| "127.0.0.1:9464".into())
            .parse()
            .context("METRICS_ADDR must be host:port")?,
        ..CdcConfig::new(PgConfig::new(database_url.clone(), "cdc"), "coach_cdc", "coach_pub")
    };
    // Inbound: the emulator pings the daemon's listener unless WEBHOOK_PUBLIC_URL says where.
    let mut inbound_config = InboundConfig::from_env()?;
    if inbound_config.webhook_public_url.is_none() && emulator.is_some() {
        inbound_config = InboundConfig {
            webhook_public_url: Some(format!(
                "http://{}/webhooks/airtable",
                cdc_config.metrics_addr
            )),
            webhook_poll: Duration::from_secs(60),
            ..inbound_config
        };
    }
    let (destination, inbound) =
        airtable_sides(airtable.clone(), inbound_config, mapping.clone(), pool.clone()).await?;
    let fresh_slot = !slot_exists(&pool, &cdc_config.slot).await?;
    let daemon = Daemon::build(&cdc_config, &mapping, destination, Some(inbound)).await?;
    // A fresh slot backfills what exists by itself; a known slot with a fresh emulator (its
    // base is empty again) needs the same copy, requested.
    if emulator.is_some() && !fresh_slot {
        let jobs: Vec<_> = mapping
            .tables
            .iter()
            .filter(|t| t.outbound().next().is_some())
            .map(|t| cdc::backfill::NewJob::whole(t.table.name, cdc::backfill::Reason::Requested))
            .collect();
        cdc::backfill::store::request(&pool, &jobs, true).await?;
    }

    let ops = daemon.ops_addr();
    let shutdown = shutdown_on_signals();
    let daemon_task = tokio::spawn(daemon.run_until(shutdown.clone()));

    let api_addr = std::env::var("API_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    // JWT_SECRET when set, else a random one for this run; the demo user gets a password.
    let secret = std::env::var("JWT_SECRET").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
    });
    let demo_hash = api::auth::password::hash(DEMO_PASSWORD.into())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    sqlx::query("UPDATE users SET password_hash = $1, password_set_at = now() WHERE email = 'demo@example.com' AND password_hash IS NULL").bind(&demo_hash).execute(&pool).await?;
    let api_config = api::Config::new(
        api_addr.parse().context("API_ADDR must be host:port")?,
        PgConfig::new(database_url.clone(), "api"),
        api::AuthConfig::new(&secret)?,
    );
    let app = api::Application::build(api_config).await?;
    let api_url = format!(
        "http://{}:{}",
        api_addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h),
        app.port()
    );

    println!();
    println!("  Postgres   {}", PgConfig::new(database_url, "stack").redacted_url());
    println!("  API        {api_url}/api/health   (ready: {api_url}/api/ready, OpenAPI: {api_url}/api/openapi.json)");
    println!("             demo login: demo@example.com / {DEMO_PASSWORD}  (POST {api_url}/api/auth/login)");
    match &emulator {
        Some(e) => {
            println!(
                "  Airtable   {} (local emulator, base {LOCAL_BASE}; AIRTABLE_TOKEN={})",
                e.url(),
                e.token()
            );
            println!("             the synced demo data: {}/_admin/bases/{LOCAL_BASE}/tables/Programs/records", e.url());
            println!("             edit as an admin (reaches Postgres): POST {}/_admin/bases/{LOCAL_BASE}/tables/Users/records", e.url());
            println!("             everything it holds:  {}/_admin/state", e.url());
        }
        None => println!("  Airtable   {} base {}", airtable.api_url, airtable.base_id),
    }
    println!(
        "  Sync       cdc daemon, metrics http://{ops}/metrics   (ready: http://{ops}/readyz)"
    );
    println!();
    println!(
        "Press Ctrl-C to stop{}.",
        if _cluster.is_some() { " (the throwaway database is deleted)" } else { "" }
    );
    app.run_until_stopped().await?;
    match daemon_task.await? {
        Ok(_) => {}
        Err(e) => eprintln!("sync daemon: {e:#}"),
    }
    pool.close().await;
    Ok(())
}

async fn slot_exists(pool: &sqlx::PgPool, slot: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)")
        .bind(slot)
        .fetch_one(pool)
        .await
}
