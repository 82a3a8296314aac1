//! The Convex mirror's commands: `cdc run --destination convex`, `cdc verify --destination
//! convex [--repair]`, and the backfill requests of `cdc backfill --destination convex`.

use crate::{
    backfill::{store, NewJob, Reason},
    config::{load_mirror, CdcConfig},
    convex::{rows::RowReader, verify, ConvexClient, ConvexConfig, WireChange},
    destination::{convex::ConvexDestination, Target},
    run::Daemon,
};
use anyhow::{bail, Context};
use std::sync::Arc;

struct Sides {
    client: Arc<ConvexClient>,
    mirror: Arc<schema::mirror::Mirror>,
    pool: sqlx::PgPool,
}

async fn sides(config: &CdcConfig) -> anyhow::Result<Sides> {
    let convex = ConvexConfig::from_env()
        .context("the Convex mirror needs CONVEX_URL and CONVEX_DEPLOY_KEY")?;
    let mirror = Arc::new(load_mirror().map_err(anyhow::Error::msg)?);
    let pool = schema::postgres::connect(&config.postgres)
        .await
        .with_context(|| format!("cannot connect to {}", config.postgres.redacted_url()))?;
    Ok(Sides { client: Arc::new(ConvexClient::new(convex)?), mirror, pool })
}

/// `cdc run --destination convex`: the mirror's own daemon, on its own slot (CDC_SLOT).
pub async fn run(
    config: &CdcConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if config.slot == "coach_cdc" || config.publication == "coach_pub" {
        bail!("the Convex mirror runs on its own slot and publication, so Airtable and Convex advance independently: set CDC_SLOT and CDC_PUBLICATION (e.g. coach_convex and coach_convex_pub)");
    }
    let s = sides(config).await?;
    let destination = ConvexDestination::new(s.client, s.mirror.clone(), s.pool);
    let daemon = Daemon::build(config, s.mirror.as_ref(), destination, None).await?;
    tracing::info!(ops = %daemon.ops_addr(), slot = %config.slot, "cdc running (Convex mirror)");
    daemon.run_until(shutdown).await?;
    Ok(())
}

/// `cdc verify --destination convex`: exit 0 only when every table is equal. With
/// `repair`, rows Convex lacks or holds differently are copied again (backfill jobs the
/// mirror's daemon runs), documents of no row are deleted, and it verifies again.
pub async fn verify(
    table: Option<String>,
    sample: Option<usize>,
    json: bool,
    repair: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let config = CdcConfig::from_env()?;
    let s = sides(&config).await?;
    let reader = RowReader::new(s.pool.clone());
    let mut parity =
        verify::verify(&s.client, &reader, &s.mirror, table.as_deref(), sample).await?;
    if let Some(wait) = repair.filter(|_| parity.iter().any(|p| p.drift() > 0)) {
        print(&parity, json)?;
        let mut jobs = Vec::new();
        for p in parity.iter().filter(|p| p.drift() > 0) {
            let again: Vec<uuid::Uuid> = p.missing.iter().chain(&p.differing).copied().collect();
            if !again.is_empty() {
                jobs.push(NewJob::rows(p.table.clone(), &again, Reason::Repair).to(Target::Convex));
            }
            if !p.extra.is_empty() {
                // At a version past every change so far: a row made since is newer still.
                let version = reader.version_for_read(std::time::Duration::from_secs(1)).await?;
                let deletes: Vec<WireChange> = p
                    .extra
                    .iter()
                    .filter_map(|id| id.parse().ok())
                    .map(|id| WireChange::delete(&p.table, id, version))
                    .collect();
                for part in deletes.chunks(100) {
                    s.client.apply(part).await?;
                }
                println!("deleted {} document(s) of no row from {}", deletes.len(), p.table);
            }
        }
        if !jobs.is_empty() {
            let ids = store::request(&s.pool, &jobs, true).await?;
            println!(
                "queued {} repair backfill(s); waiting up to {}s for the mirror's daemon",
                ids.len(),
                wait.as_secs()
            );
            tokio::time::timeout(wait, super::backfill::follow(&s.pool, &ids)).await.context(
                "the repair did not finish in time: is `cdc run --destination convex` running?",
            )??;
        }
        parity = verify::verify(&s.client, &reader, &s.mirror, table.as_deref(), sample).await?;
    }
    print(&parity, json)?;
    let drift: usize = parity.iter().map(|p| p.drift()).sum();
    if drift > 0 {
        bail!("Postgres and Convex differ in {drift} row(s)");
    }
    Ok(())
}

fn print(parity: &[verify::TableParity], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(parity)?);
        return Ok(());
    }
    println!(
        "{:<28} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7}",
        "table", "postgres", "convex", "missing", "extra", "differing", "hashed"
    );
    for p in parity {
        println!(
            "{:<28} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7}",
            p.table,
            p.postgres,
            p.convex,
            p.missing.len(),
            p.extra.len(),
            p.differing.len(),
            p.hashed
        );
    }
    Ok(())
}

/// Checks the tables a `cdc backfill --destination convex` names.
pub fn check_tables(tables: &[String]) -> anyhow::Result<()> {
    let mirror = load_mirror().map_err(anyhow::Error::msg)?;
    for t in tables {
        if mirror.table(t).is_none() {
            let all: Vec<&str> = mirror.tables.iter().map(|t| t.table.name).collect();
            bail!("{t} is not a mirrored table (those are: {})", all.join(", "));
        }
    }
    Ok(())
}
