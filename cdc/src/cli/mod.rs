//! The operator CLI (the only place, with main, that speaks anyhow). Every command reads the environment contract (README) and exits
//! non-zero with a message naming the fix when something is wrong.

use crate::{
    airtable::AirtableConfig,
    config::{load_mapping, CdcConfig},
    destination::{LogDestination, NullDestination},
    inbound::InboundConfig,
    postgres::{self, check, publication, ConnInfo},
    run::{airtable_sides, shutdown_on_signals, Daemon},
    telemetry::LogFormat,
};
mod admin;
mod backfill;
mod cutover;
mod inbound;
mod migrate;
mod mirror;
mod slot;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use schema::postgres::PgConfig;
use std::{sync::Arc, time::Duration};

#[derive(Debug, Parser)]
#[command(name = "cdc", version, about = "Postgres <-> Airtable sync daemon and operator CLI")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DestinationKind {
    /// Airtable (AIRTABLE_API_URL, AIRTABLE_TOKEN, AIRTABLE_BASE_ID, SYNC_MAPPING).
    Airtable,
    /// One JSON line per change on stdout.
    Log,
    /// Discard (measure the stream alone).
    Null,
    /// The Convex mirror (CONVEX_URL, CONVEX_DEPLOY_KEY, CONVEX_MAPPING), on its own slot
    /// and publication (CDC_SLOT, CDC_PUBLICATION).
    Convex,
}

impl DestinationKind {
    /// Whose dead letters and backfills a command means.
    fn target(self) -> crate::destination::Target {
        match self {
            DestinationKind::Convex => crate::destination::Target::Convex,
            _ => crate::destination::Target::Airtable,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations to DATABASE_URL (a role with CREATEROLE that owns the
    /// database the first time). A no-op when the database is current.
    Migrate {
        /// Only report the state; exit 1 when migrations are pending.
        #[arg(long)]
        check: bool,
    },
    /// A database from nothing, as its owner: migrations, the LOGIN users the API and the
    /// daemon run as (API_DB_USER/API_DB_PASSWORD in coach_api, CDC_DB_USER/CDC_DB_PASSWORD
    /// with REPLICATION in coach_sync), the publication. Idempotent: run it on every deploy.
    Init,
    /// The inbound side: `deletes list|approve|reject` (deletions held by SYNC_DELETE_GUARD).
    Inbound {
        #[command(subcommand)]
        action: inbound::InboundAction,
    },
    /// Operator tasks for the PWA's users: `invite EMAIL` (a first password).
    Admin {
        #[command(subcommand)]
        action: admin::AdminAction,
    },
    /// Stream committed changes from the slot (created with the publication when missing).
    Run {
        #[arg(long, env = "CDC_DESTINATION", value_enum, default_value_t = DestinationKind::Airtable)]
        destination: DestinationKind,
    },
    /// Check the database for the daemon: wal_level, slot and sender headroom, REPLICATION,
    /// replica identities, max_slot_wal_keep_size, publication, slot, replication origins.
    Check {
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
        /// Fail on advice and on what `cdc run` would create, too.
        #[arg(long)]
        strict: bool,
    },
    /// The publication (CDC_PUBLICATION).
    Publication {
        #[command(subcommand)]
        action: PublicationAction,
    },
    /// The replication slot (CDC_SLOT): the outbound checkpoint.
    Slot {
        #[command(subcommand)]
        action: SlotAction,
    },
    /// The dead-letter queue: what could not be synced.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Copy the rows of mapped tables to Airtable as they are now (chunked, watermarked in
    /// the stream, resumable), and follow the copy; `status` shows every backfill.
    #[command(args_conflicts_with_subcommands = true)]
    Backfill {
        #[command(subcommand)]
        action: Option<BackfillAction>,
        /// Tables the sync sends, e.g. programs method_usage.
        tables: Vec<String>,
        /// Only rows matching this SQL condition on the table's columns, e.g.
        /// "user_id = '…'" (checked first; run read-only).
        #[arg(long = "where", value_name = "SQL")]
        predicate: Option<String>,
        /// Queue and return; do not follow.
        #[arg(long)]
        detach: bool,
        /// Whose backfill: the Airtable sync's or the Convex mirror's.
        #[arg(long, env = "CDC_DESTINATION", value_enum, default_value_t = DestinationKind::Airtable)]
        destination: DestinationKind,
    },
    /// The Airtable base: `check [--apply]` compares it with the mapping (and creates what
    /// is missing).
    Airtable {
        #[command(subcommand)]
        action: cutover::AirtableAction,
    },
    /// Import every record of every mapped table from Airtable into Postgres (the cutover;
    /// parents first, resumable, idempotent, reads only). Needs the slot to exist.
    Import {
        /// Only records changed in Airtable after this time (RFC 3339): the roll forward
        /// after a rollback window.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Only these mapped tables.
        #[arg(long = "table")]
        tables: Vec<String>,
    },
    /// Compare Postgres with Airtable: counts, missing rows and records, duplicates, every
    /// mapped field. Exit 0 only when they are equal.
    Verify {
        #[arg(long)]
        table: Option<String>,
        /// Compare the fields of this many random rows per table (counts stay exact).
        #[arg(long)]
        sample: Option<usize>,
        #[arg(long)]
        json: bool,
        /// Set each drift right by the side that owns it (re-send, re-apply, re-import,
        /// remove duplicates), wait for `cdc run` to write what it queued, verify again.
        #[arg(long)]
        repair: bool,
        /// With --repair: how long to wait for the daemon to write the repair, in seconds.
        #[arg(long, default_value_t = 300)]
        wait: u64,
        /// Compare with Airtable or with the Convex mirror (counts, ids and hashes of
        /// `--sample` rows per table, every row without it).
        #[arg(long, env = "CDC_DESTINATION", value_enum, default_value_t = DestinationKind::Airtable)]
        destination: DestinationKind,
    },
    /// Re-send a table's current state, or one row's: `cdc backfill TABLE [--where id = ID]`.
    Resync {
        /// A mapped Postgres table, e.g. programs.
        table: String,
        /// One row's id; without it, the whole table.
        id: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackfillAction {
    /// Every open backfill and the last finished ones: rows done of total, rate, ETA.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Stop open backfills (the rows done stay done).
    Cancel {
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Pending dead letters (with --all, resolved ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// One dead letter: error, attempts and a preview of its payload (`--full`: everything
    /// stored, as JSON).
    Show {
        id: i64,
        #[arg(long)]
        full: bool,
    },
    /// Send again, through the outbox (the row's current state is read when it is sent).
    Replay {
        /// Dead letter ids; none with --all.
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
    /// Give up on a dead letter (kept, marked discarded).
    Discard { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum PublicationAction {
    /// Create or alter the publication to hold exactly the mapped tables (run as their owner).
    Sync,
}

#[derive(Debug, Subcommand)]
pub enum SlotAction {
    /// Create the slot (pgoutput) if it does not exist.
    Create,
    /// Show the slot: active pid, confirmed_flush_lsn, retained WAL, wal_status, safe_wal_size, lag.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Re-create the slot (a lost one, or any time it must be) and backfill every table the
    /// sync sends, each followed by a reconcile: nothing lost, nothing duplicated. Stop
    /// `cdc run` first.
    Recover,
    /// Drop the slot. Everything not yet streamed is lost to the daemon.
    Drop {
        /// Required: dropping loses the checkpoint.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate { check } => migrate::run(&PgConfig::from_env("cdc")?, check).await,
        Command::Run { destination } => {
            let config = CdcConfig::from_env()?;
            let shutdown = shutdown_on_signals();
            match destination {
                DestinationKind::Airtable => {
                    let airtable = AirtableConfig::from_env().context("the Airtable destination needs AIRTABLE_TOKEN and AIRTABLE_BASE_ID (or run with --destination log)")?;
                    let mapping = Arc::new(load_mapping().map_err(anyhow::Error::msg)?);
                    let pool =
                        schema::postgres::connect(&config.postgres).await.with_context(|| {
                            format!("cannot connect to {}", config.postgres.redacted_url())
                        })?;
                    let (destination, inbound) =
                        airtable_sides(airtable, InboundConfig::from_env()?, mapping.clone(), pool)
                            .await?;
                    let daemon =
                        Daemon::build(&config, &mapping, destination, Some(inbound)).await?;
                    tracing::info!(ops = %daemon.ops_addr(), "cdc running (outbound and inbound)");
                    daemon.run_until(shutdown).await?;
                    Ok(())
                }
                DestinationKind::Log => {
                    run_daemon(&config, LogDestination::default(), shutdown).await
                }
                DestinationKind::Null => {
                    run_daemon(&config, NullDestination::default(), shutdown).await
                }
                DestinationKind::Convex => mirror::run(&config, shutdown).await,
            }
        }
        Command::Check { json, strict } => {
            let config = CdcConfig::from_env()?;
            let client = sql(&config).await?;
            let mapping = load_mapping().map_err(anyhow::Error::msg)?;
            let findings =
                check::run(&client, &config.slot, &config.publication, &mapping.published_tables())
                    .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                for f in &findings {
                    let level = match f.level {
                        check::Level::Ok => "ok",
                        check::Level::Fail => "FAIL",
                        check::Level::WillCreate => "NEW",
                        check::Level::Advice => "WARN",
                    };
                    println!("{level:<5} {:<24} {}", f.check, f.detail);
                    if let Some(fix) = &f.fix {
                        println!("      fix: {fix}");
                    }
                }
            }
            let failed = findings.iter().filter(|f| f.fails(strict)).count();
            if failed > 0 {
                bail!("{failed} check(s) failed{}", if strict { " (--strict)" } else { "" });
            }
            Ok(())
        }
        Command::Publication { action: PublicationAction::Sync } => {
            let config = CdcConfig::from_env()?;
            let client = sql(&config).await?;
            let mapping = load_mapping().map_err(anyhow::Error::msg)?;
            let change =
                publication::sync(&client, &config.publication, &mapping.published_tables())
                    .await?;
            println!("{}", change.describe(&config.publication));
            Ok(())
        }
        Command::Dlq { action } => dlq_command(action).await,
        Command::Init => admin::init().await,
        Command::Admin { action } => admin::run(action).await,
        Command::Inbound { action } => inbound::run(action).await,
        Command::Airtable { action } => cutover::airtable(action).await,
        Command::Import { since, tables } => cutover::import(since, tables).await,
        Command::Verify { table, sample, json, repair, wait, destination } => {
            let repair = repair.then(|| Duration::from_secs(wait));
            match destination {
                DestinationKind::Convex => mirror::verify(table, sample, json, repair).await,
                _ => cutover::verify(table, sample, json, repair).await,
            }
        }
        Command::Backfill { action, tables, predicate, detach, destination } => {
            let config = CdcConfig::from_env()?;
            let pool = schema::postgres::connect(&config.postgres).await?;
            match action {
                Some(BackfillAction::Status { json }) => backfill::status(&pool, json).await,
                Some(BackfillAction::Cancel { ids, all }) => {
                    backfill::cancel(&pool, ids, all).await
                }
                None if tables.is_empty() => {
                    bail!("name the tables to backfill (or `cdc backfill status`)")
                }
                None => {
                    let mapping = load_mapping().map_err(anyhow::Error::msg)?;
                    let request = backfill::Request {
                        destination: destination.target(),
                        tables,
                        predicate,
                        reason: crate::backfill::Reason::Requested,
                        detach,
                    };
                    backfill::request(&pool, &mapping, &config.slot, request).await
                }
            }
        }
        Command::Resync { table, id } => {
            let config = CdcConfig::from_env()?;
            let pool = schema::postgres::connect(&config.postgres).await?;
            let mapping = load_mapping().map_err(anyhow::Error::msg)?;
            let request = backfill::Request {
                destination: crate::destination::Target::Airtable,
                tables: vec![table],
                predicate: id.map(|i| format!("id = '{i}'")),
                reason: crate::backfill::Reason::Requested,
                detach: false,
            };
            backfill::request(&pool, &mapping, &config.slot, request).await
        }
        Command::Slot { action } => {
            let config = CdcConfig::from_env()?;
            let client = sql(&config).await?;
            slot::command(&client, &config, action).await
        }
    }
}

async fn sql(config: &CdcConfig) -> anyhow::Result<tokio_postgres::Client> {
    let conn = ConnInfo::from_config(&config.postgres)?;
    postgres::connect(&conn, &config.postgres.application_name)
        .await
        .with_context(|| format!("cannot connect to {}", config.postgres.redacted_url()))
}

async fn run_daemon<D: crate::destination::Destination>(
    config: &CdcConfig,
    destination: D,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mapping = load_mapping().map_err(anyhow::Error::msg)?;
    let daemon = Daemon::build(config, &mapping, destination, None).await?;
    tracing::info!(ops = %daemon.ops_addr(), "cdc running");
    daemon.run_until(shutdown).await?;
    Ok(())
}

async fn dlq_command(action: DlqAction) -> anyhow::Result<()> {
    let pool = schema::postgres::connect(&PgConfig::from_env("cdc")?).await?;
    match action {
        DlqAction::List { all, limit, json } => {
            let rows = crate::dlq::list(&pool, all, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no dead letters{}", if all { "" } else { " pending" });
            } else {
                println!(
                    "{:>6}  {:<8} {:<9} {:<22} {:<36} {:<7} {:<26} {:>8}  {:<9} first failed",
                    "id", "to", "direction", "table", "pg id", "op", "error", "attempts", "status"
                );
                for r in rows {
                    println!(
                        "{:>6}  {:<8} {:<9} {:<22} {:<36} {:<7} {:<26} {:>8}  {:<9} {}",
                        r.id,
                        r.destination,
                        r.direction.as_str(),
                        r.table_name.unwrap_or_default(),
                        r.pg_id.map(|u| u.to_string()).unwrap_or_default(),
                        r.operation,
                        r.error_code,
                        r.attempts,
                        r.status.as_str(),
                        r.first_failed_at.to_rfc3339()
                    );
                }
            }
        }
        DlqAction::Show { id, full } => {
            let d = crate::dlq::show(&pool, id).await?;
            if full {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", crate::dlq::summary(&d));
            }
        }
        DlqAction::Replay { ids, all } => {
            if ids.is_empty() && !all {
                bail!("name dead letter ids, or pass --all");
            }
            let n = crate::dlq::replay(&pool, if all { None } else { Some(&ids) }).await?;
            if n == 0 {
                bail!("nothing to replay: no such pending outbound dead letter");
            }
            println!("queued {n} replay(s); they are sent in stream order (see `cdc dlq list`)");
        }
        DlqAction::Discard { id } => {
            crate::dlq::discard(&pool, id).await?;
            println!("discarded dead letter {id}");
        }
    }
    Ok(())
}
