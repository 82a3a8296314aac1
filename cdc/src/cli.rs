//! The operator CLI. Every command reads the environment contract (README) and exits
//! non-zero with a message naming the fix when something is wrong.

use crate::telemetry::LogFormat;
use clap::{Parser, Subcommand};
use schema::postgres::PgConfig;

#[derive(Debug, Parser)]
#[command(name = "cdc", version, about = "Postgres <-> Airtable sync daemon and operator CLI")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
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
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate { check } => {
            let config = PgConfig::from_env("cdc")?;
            crate::migrate::run(&config, check).await
        }
    }
}
