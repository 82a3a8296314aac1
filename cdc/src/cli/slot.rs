//! `cdc slot …`: the outbound checkpoint, and who leads the daemons that read it.

use super::{backfill, SlotAction};
use crate::{
    config::{load_mapping, CdcConfig},
    postgres::slot,
};
use anyhow::bail;

pub(super) async fn command(
    client: &tokio_postgres::Client,
    config: &CdcConfig,
    action: SlotAction,
) -> anyhow::Result<()> {
    let name = config.slot.as_str();
    match action {
        SlotAction::Create => match slot::status(client, name).await? {
            Some(s) => {
                if let Some(p) = s.problem() {
                    bail!("{p}");
                }
                println!("slot {name} already exists (confirmed {:?})", s.confirmed_flush_lsn);
            }
            None => println!("created slot {name} at {}", slot::create(client, name).await?),
        },
        SlotAction::Status { json } => {
            let Some(s) = slot::status(client, name).await? else {
                bail!("slot {name} does not exist: create it with `cdc slot create`")
            };
            let leader = crate::leadership::lock::leader(client, name).await?;
            if json {
                #[derive(serde::Serialize)]
                struct Out<'a> {
                    #[serde(flatten)]
                    slot: &'a slot::SlotStatus,
                    leader: &'a Option<crate::leadership::LeaderInfo>,
                }
                println!("{}", serde_json::to_string_pretty(&Out { slot: &s, leader: &leader })?);
            } else {
                println!("leader               {}", leader_line(leader.as_ref()));
                println!("slot                 {}", s.name);
                println!(
                    "active               {} (pid {})",
                    s.active,
                    s.active_pid.map_or("-".into(), |p| p.to_string())
                );
                println!(
                    "confirmed_flush_lsn  {}",
                    s.confirmed_flush_lsn.as_deref().unwrap_or("-")
                );
                println!("restart_lsn          {}", s.restart_lsn.as_deref().unwrap_or("-"));
                println!("lag                  {} bytes", s.lag_bytes.unwrap_or(0));
                println!("retained WAL         {} bytes", s.retained_bytes.unwrap_or(0));
                println!("wal_status           {}", s.wal_status.as_deref().unwrap_or("-"));
                println!(
                    "safe_wal_size        {}",
                    s.safe_wal_size.map_or("unlimited".into(), |b| format!("{b} bytes"))
                );
            }
            if let Some(p) = s.problem() {
                bail!("{p}");
            }
        }
        SlotAction::Recover => {
            let pool = schema::postgres::connect(&config.postgres).await?;
            let mapping = load_mapping().map_err(anyhow::Error::msg)?;
            let target = match crate::config::var("CDC_DESTINATION").as_deref() {
                Some("convex") => crate::destination::Target::Convex,
                _ => crate::destination::Target::Airtable,
            };
            backfill::recover_slot(client, &pool, &mapping, name, target).await?;
        }
        SlotAction::Drop { yes } => {
            if !yes {
                bail!(
                    "dropping slot {name} loses the outbound checkpoint; pass --yes if you mean it"
                );
            }
            match slot::status(client, name).await? {
                None => bail!("slot {name} does not exist"),
                Some(s) if s.active => {
                    bail!("slot {name} is in use by pid {:?}: stop `cdc run` first", s.active_pid)
                }
                Some(_) => {
                    slot::drop(client, name).await?;
                    println!("dropped slot {name}");
                }
            }
        }
    }
    Ok(())
}

/// Who leads the slot's daemons, for `cdc slot status`.
fn leader_line(l: Option<&crate::leadership::LeaderInfo>) -> String {
    match l {
        None => "none has led yet".into(),
        Some(l) if l.holding => format!(
            "{} (pid {}, ops {}), epoch {}, since {}",
            l.host,
            l.pid,
            l.ops_addr.as_deref().unwrap_or("-"),
            l.epoch,
            l.since.to_rfc3339()
        ),
        Some(l) => format!(
            "none now; the last was {} ({} at epoch {})",
            l.describe(),
            l.released_at.map_or("lost, not released".into(), |t| format!(
                "stepped down {}",
                t.to_rfc3339()
            )),
            l.epoch
        ),
    }
}
