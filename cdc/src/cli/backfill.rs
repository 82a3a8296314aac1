//! `cdc backfill …`, `cdc resync` (its alias) and `cdc slot recover`: queue backfills, follow
//! them, see where they are.

use crate::backfill::{status::Progress, store, JobId, JobState, NewJob, Reason};
use crate::postgres::slot;
use anyhow::{bail, Context};
use schema::mapping::Mapping;
use sqlx::PgPool;
use std::{io::IsTerminal, time::Duration};

/// What to backfill, as the operator named it.
pub struct Request {
    pub destination: crate::destination::Target,
    pub tables: Vec<String>,
    pub predicate: Option<String>,
    pub reason: Reason,
    pub detach: bool,
}

/// Queues the jobs (a running daemon learns of them through the stream) and, unless
/// detached, follows them until they are done.
pub async fn request(
    pool: &PgPool,
    mapping: &Mapping,
    slot_name: &str,
    r: Request,
) -> anyhow::Result<()> {
    let mut jobs = Vec::new();
    if r.destination == crate::destination::Target::Convex {
        super::mirror::check_tables(&r.tables)?;
    }
    for table in &r.tables {
        let convex = r.destination == crate::destination::Target::Convex;
        let Some(t) = schema::registry::table(table).filter(|_| convex).or_else(|| {
            mapping.table(table).filter(|t| t.outbound().next().is_some()).map(|t| t.table)
        }) else {
            bail!(
                "{table} is not a table the sync sends to Airtable (those are: {})",
                sending(mapping).join(", ")
            );
        };
        if let Some(p) = &r.predicate {
            store::check_predicate(pool, t.name, p)
                .await
                .with_context(|| format!("--where {p:?} is not a condition on {table}"))?;
        }
        jobs.push(
            NewJob { predicate: r.predicate.clone(), ..NewJob::whole(table, r.reason) }
                .to(r.destination),
        );
    }
    let ids = store::request(pool, &jobs, true).await?;
    for (id, j) in ids.iter().zip(&jobs) {
        println!("queued backfill {id} of {}", j.table);
    }
    if r.detach {
        return Ok(());
    }
    if !daemon_running(pool, slot_name).await? {
        println!("no `cdc run` is streaming slot {slot_name} now: the backfill runs when it starts (`cdc backfill status` shows it)");
        return Ok(());
    }
    follow(pool, &ids).await
}

/// Tables the sync sends (those a backfill can copy).
fn sending(mapping: &Mapping) -> Vec<&'static str> {
    mapping.tables.iter().filter(|t| t.outbound().next().is_some()).map(|t| t.table.name).collect()
}

async fn daemon_running(pool: &PgPool, slot_name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot_name)
    .fetch_one(pool)
    .await
}

/// Follows jobs until they are finished: progress bars on a terminal, JSON lines otherwise.
pub(super) async fn follow(pool: &PgPool, ids: &[JobId]) -> anyhow::Result<()> {
    let terminal = std::io::stderr().is_terminal();
    let bars = indicatif::MultiProgress::new();
    let style =
        indicatif::ProgressStyle::with_template("{prefix:<28} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> ");
    let mut shown: Vec<(JobId, indicatif::ProgressBar)> = Vec::new();
    // Without a terminal: a line per job whenever its state or rows done moved.
    let mut printed: std::collections::HashMap<JobId, (JobState, i64)> = Default::default();
    loop {
        let jobs: Vec<Progress> =
            store::by_ids(pool, ids).await?.into_iter().map(Progress::of).collect();
        for p in &jobs {
            if terminal {
                let bar = match shown.iter().find(|(id, _)| *id == p.job.id) {
                    Some((_, b)) => b.clone(),
                    None => {
                        let b = bars.add(indicatif::ProgressBar::new(0).with_style(style.clone()));
                        b.set_prefix(format!("{} {}", p.job.id, p.job.table));
                        shown.push((p.job.id, b.clone()));
                        b
                    }
                };
                bar.set_length(p.job.rows_total.unwrap_or(0).max(p.job.rows_done) as u64);
                bar.set_position(p.job.rows_done as u64);
                bar.set_message(format!(
                    "{} rows/s, eta {} ({})",
                    p.rate.map_or("-".into(), |r| format!("{r:.1}")),
                    crate::backfill::status::duration(p.eta_seconds),
                    p.job.state.as_str()
                ));
            } else if printed.insert(p.job.id, (p.job.state, p.job.rows_done))
                != Some((p.job.state, p.job.rows_done))
            {
                let line = serde_json::json!({
                    "job": p.job.id, "table": p.job.table, "state": p.job.state,
                    "rows_done": p.job.rows_done, "rows_total": p.job.rows_total,
                    "rate": p.rate.map(|r| (r * 10.0).round() / 10.0), "eta_seconds": p.eta_seconds.map(f64::round),
                });
                println!("{line}");
            }
        }
        if jobs.iter().all(|p| !p.job.state.is_open()) {
            for (_, b) in &shown {
                b.finish();
            }
            let cancelled = jobs.iter().filter(|p| p.job.state == JobState::Cancelled).count();
            if cancelled > 0 {
                bail!("{cancelled} backfill(s) were cancelled");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `cdc backfill status`.
pub async fn status(pool: &PgPool, json: bool) -> anyhow::Result<()> {
    let rows: Vec<Progress> = store::list(pool, 20).await?.into_iter().map(Progress::of).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", crate::backfill::status::table(&rows));
    }
    Ok(())
}

/// `cdc backfill cancel`.
pub async fn cancel(pool: &PgPool, ids: Vec<i64>, all: bool) -> anyhow::Result<()> {
    if ids.is_empty() && !all {
        bail!("name backfill job ids, or pass --all");
    }
    let ids: Vec<JobId> = ids.into_iter().map(JobId).collect();
    let n = store::cancel(pool, (!all).then_some(ids.as_slice())).await?;
    if n == 0 {
        bail!("no such open backfill");
    }
    println!("cancelled {n} backfill(s)");
    Ok(())
}

/// `cdc slot recover`: a new slot, then a full backfill of every table the sync sends, each
/// ending with a reconcile (deletes the lost slot never streamed). Changes from the new slot's
/// consistent point stream; everything before it is copied. Upserts merge on the pg id, so
/// nothing is duplicated.
pub async fn recover_slot(
    client: &tokio_postgres::Client,
    pool: &PgPool,
    mapping: &Mapping,
    name: &str,
    target: crate::destination::Target,
) -> anyhow::Result<()> {
    match slot::status(client, name).await? {
        Some(s) if s.active => {
            bail!("slot {name} is in use by pid {:?}: stop `cdc run` first", s.active_pid)
        }
        Some(s) => {
            slot::drop(client, name).await?;
            println!("dropped slot {name} (wal_status {})", s.wal_status.as_deref().unwrap_or("-"));
        }
        None => println!("slot {name} did not exist"),
    }
    let at = slot::create(client, name).await?;
    println!("created slot {name} at {at}");
    let jobs: Vec<NewJob> = match target {
        // The mirror's versions make the copy safe over what Convex holds; documents of rows
        // the lost slot never deleted are `cdc verify --destination convex --repair`'s.
        crate::destination::Target::Convex => crate::config::load_mirror()
            .map_err(anyhow::Error::msg)?
            .tables
            .iter()
            .map(|t| NewJob::whole(t.table.name, Reason::SlotRecover).to(target))
            .collect(),
        crate::destination::Target::Airtable => sending(mapping)
            .into_iter()
            .map(|t| NewJob { reconcile: true, ..NewJob::whole(t, Reason::SlotRecover) })
            .collect(),
    };
    let ids = store::request(pool, &jobs, false).await?;
    println!(
        "queued {} backfill(s) (jobs {}): start `cdc run`; `cdc backfill status` follows them",
        ids.len(),
        ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
