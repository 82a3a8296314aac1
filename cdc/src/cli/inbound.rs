//! `cdc inbound deletes …`: the deletions a reconcile inferred but held, because one pass
//! would have deleted too much of a table at once (SYNC_DELETE_GUARD).

use crate::{
    config::{load_mapping, CdcConfig},
    inbound::apply::{Applier, Scope, Writer},
};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum InboundAction {
    /// Deletions inferred from records missing in Airtable, held for a decision.
    Deletes {
        #[command(subcommand)]
        action: DeletesAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeletesAction {
    /// The held deletions (with --all, the rejected ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply held deletions: their rows are deleted (or soft-deleted while referenced).
    Approve {
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
    /// Keep the rows: their records are not inferred deleted again until they reappear.
    Reject {
        ids: Vec<i64>,
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(action: InboundAction) -> anyhow::Result<()> {
    let InboundAction::Deletes { action } = action;
    let config = CdcConfig::from_env()?;
    let pool = schema::postgres::connect(&config.postgres)
        .await
        .with_context(|| format!("cannot connect to {}", config.postgres.redacted_url()))?;
    let mapping = Arc::new(load_mapping().map_err(anyhow::Error::msg)?);
    let applier = Applier::with_scope(mapping, pool, Scope::Inbound, Writer::Operator).await?;
    let chosen = |ids: Vec<i64>, all: bool| -> anyhow::Result<Option<Vec<i64>>> {
        match (ids.is_empty(), all) {
            (true, false) => bail!("name held deletion ids, or pass --all"),
            (_, true) => Ok(None),
            (false, false) => Ok(Some(ids)),
        }
    };
    match action {
        DeletesAction::List { all, json } => {
            let rows = applier.held_deletes(all).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no deletions held");
            } else {
                println!(
                    "{:>6}  {:<22} {:<18} {:<36} {:<8} held at",
                    "id", "table", "record", "pg id", "state"
                );
                for r in rows {
                    println!(
                        "{:>6}  {:<22} {:<18} {:<36} {:<8} {}",
                        r.id,
                        r.table_name,
                        r.airtable_id,
                        r.pg_id,
                        r.state,
                        r.held_at.to_rfc3339()
                    );
                }
            }
        }
        DeletesAction::Approve { ids, all } => {
            let ids = chosen(ids, all)?;
            let n = applier.approve_held(ids.as_deref()).await?;
            applier.release().await;
            println!("applied {n} held deletion(s)");
        }
        DeletesAction::Reject { ids, all } => {
            let ids = chosen(ids, all)?;
            let n = applier.reject_held(ids.as_deref()).await?;
            println!("rejected {n} held deletion(s): their rows stay");
        }
    }
    Ok(())
}
