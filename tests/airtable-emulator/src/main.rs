//! `airtable-emulator --addr 127.0.0.1:0 --token TOKEN [--schema FILE]`: prints its base URL
//! on the first line of stdout, then serves until interrupted.

use airtable_emulator::{Emulator, EmulatorConfig, SchemaFile};
use clap::Parser;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Debug, Parser)]
#[command(
    name = "airtable-emulator",
    version,
    about = "A strict local Airtable for tests and development"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// The one token accepted as `Authorization: Bearer …`.
    #[arg(long, env = "AIRTABLE_TOKEN")]
    token: String,
    /// A schema file (the Meta API's shape); without one, bases, tables and fields are
    /// inferred from use.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// Requests per sliding window per base (0 disables).
    #[arg(long, default_value_t = 5)]
    base_rps: u32,
    /// Requests per sliding window per token (0 disables).
    #[arg(long, default_value_t = 50)]
    token_rps: u32,
    /// Penalty after a 429, in seconds.
    #[arg(long, default_value_t = 30.0)]
    penalty_secs: f64,
    /// Seed for fault injection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow_free::Result {
    tracing_subscriber::fmt().with_writer(std::io::stderr).json().try_init().ok();
    let args = Args::parse();
    let mut config = EmulatorConfig::new(args.token);
    if let Some(path) = &args.schema {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let schema: SchemaFile = serde_json::from_str(&text)
            .map_err(|e| format!("invalid schema {}: {e}", path.display()))?;
        config.schema = Some(schema);
    }
    config.limits.per_base = (args.base_rps > 0).then_some(args.base_rps);
    config.limits.per_token = (args.token_rps > 0).then_some(args.token_rps);
    config.limits.penalty = Duration::from_secs_f64(args.penalty_secs.max(0.0));
    config.seed = args.seed;
    let emulator = Emulator::start(config, args.addr).await.map_err(|e| e.to_string())?;
    println!("airtable-emulator listening on {}", emulator.url());
    for (id, name) in emulator.admin().bases() {
        println!("base {id} {name}");
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = emulator.wait() => {}
    }
    Ok(())
}

/// `main` reports errors as text without pulling in anyhow.
mod anyhow_free {
    pub type Result = std::result::Result<(), String>;
}
