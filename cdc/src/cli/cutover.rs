//! `cdc airtable check [--apply]`, `cdc import`, `cdc verify`: the cutover from an existing
//! base (the README's "Cutover" section).

use crate::{
    airtable::{binding, meta::BaseMeta, AirtableClient, AirtableConfig, Lane},
    backfill::{self, JobId, JobState},
    config::{load_mapping, CdcConfig},
    cutover::{
        check::{Checker, Level},
        import::{Importer, Options, Progress, TableSummary},
        repair::Repairer,
        verify::{DriftKind, TableParity, Verifier},
    },
    postgres::slot,
};
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use schema::mapping::Mapping;
use std::{
    collections::HashMap,
    io::IsTerminal,
    sync::Arc,
    time::{Duration, Instant},
};

#[derive(Debug, Subcommand)]
pub enum AirtableAction {
    /// Compare the base with the mapping (tables, fields, types, links, the merge field);
    /// exit 1 when the daemon could not run against it.
    Check {
        /// Create what is missing through the Meta API (needs schema.bases:write); never
        /// deletes, renames or retypes.
        #[arg(long)]
        apply: bool,
        #[arg(long)]
        json: bool,
    },
}

/// What every cutover command needs: the mapping, Postgres, an Airtable client.
struct Sides {
    mapping: Arc<Mapping>,
    pool: sqlx::PgPool,
    client: Arc<AirtableClient>,
    config: CdcConfig,
}

async fn sides() -> anyhow::Result<Sides> {
    let config = CdcConfig::from_env()?;
    let airtable = AirtableConfig::from_env()
        .context("the cutover needs AIRTABLE_TOKEN and AIRTABLE_BASE_ID")?;
    let budget = Arc::new(airtable.budget());
    let client = Arc::new(AirtableClient::new(airtable, budget)?);
    let mapping = Arc::new(load_mapping().map_err(anyhow::Error::msg)?);
    let pool = schema::postgres::connect(&config.postgres)
        .await
        .with_context(|| format!("cannot connect to {}", config.postgres.redacted_url()))?;
    // Ids on the wire, as the daemon: a rename since never breaks an import or a verify.
    let meta = BaseMeta::from_json(&client.tables(Lane::Bulk).await?);
    binding::bind(&client, &meta, &mapping, &pool).await?;
    Ok(Sides { mapping, pool, client, config })
}

pub async fn airtable(action: AirtableAction) -> anyhow::Result<()> {
    let AirtableAction::Check { apply, json } = action;
    let s = sides().await?;
    let checker = Checker { client: &s.client, mapping: &s.mapping, pool: &s.pool };
    let mut report = checker.check().await?;
    if apply && report.fails() {
        for created in checker.apply(&report).await? {
            println!("created {created}");
        }
        report = checker.check().await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report.findings)?);
    } else {
        for f in &report.findings {
            let level = match f.level {
                Level::Ok => "ok",
                Level::Renamed => "RENAMED",
                Level::Missing => "MISSING",
                Level::Fail => "FAIL",
            };
            let at = match &f.field {
                Some(field) => format!("{}.{field}", f.table),
                None => f.table.clone(),
            };
            println!("{level:<8} {at:<40} {}", f.detail);
            if let Some(fix) = &f.fix {
                println!("         fix: {fix}");
            }
        }
    }
    let bad = report.findings.iter().filter(|f| f.level.blocks()).count();
    if bad > 0 {
        bail!("{bad} problem(s): the daemon cannot run against this base yet");
    }
    Ok(())
}

/// Bars on a terminal (records/s; an ETA from the Airtable read budget when the size is
/// known), JSON lines otherwise.
struct Shown {
    terminal: bool,
    bars: indicatif::MultiProgress,
    current: Option<(indicatif::ProgressBar, Instant)>,
    /// Records a second the read budget allows (100 a request).
    ceiling: f64,
}

impl Progress for Shown {
    fn started(&mut self, table: &str, estimate: Option<u64>) {
        if self.terminal {
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:<28} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bar = self.bars.add(indicatif::ProgressBar::new(estimate.unwrap_or(0)));
            bar.set_style(style);
            bar.set_prefix(table.to_owned());
            self.current = Some((bar, Instant::now()));
        } else {
            println!(
                "{}",
                serde_json::json!({ "table": table, "state": "started", "estimate": estimate })
            );
            self.current = None;
        }
    }

    fn advanced(&mut self, s: &TableSummary) {
        let Some((bar, since)) = &self.current else {
            println!(
                "{}",
                serde_json::json!({ "table": s.table, "state": "running", "listed": s.listed, "imported": s.imported, "dead_lettered": s.dead_lettered })
            );
            return;
        };
        let rate = s.listed as f64 / since.elapsed().as_secs_f64().max(0.001);
        if bar.length().unwrap_or(0) < s.listed {
            bar.set_length(s.listed);
        }
        bar.set_position(s.listed);
        let left = bar.length().unwrap_or(0).saturating_sub(s.listed) as f64;
        bar.set_message(format!(
            "{rate:.0} rec/s, eta {} ({} dead-lettered)",
            crate::backfill::status::duration(Some(left / self.ceiling)),
            s.dead_lettered
        ));
    }

    fn finished(&mut self, s: &TableSummary, resumed: bool) {
        if let Some((bar, _)) = self.current.take() {
            bar.finish();
        } else {
            println!(
                "{}",
                serde_json::json!({ "table": s.table, "state": if resumed { "done before" } else { "done" }, "summary": s })
            );
        }
    }
}

pub async fn import(since: Option<DateTime<Utc>>, tables: Vec<String>) -> anyhow::Result<()> {
    let s = sides().await?;
    // Rows that exist before the slot are copied to Airtable at the first `cdc run`: imported
    // rows came from Airtable, so the slot must be there first.
    let client = crate::postgres::connect(
        &crate::postgres::ConnInfo::from_config(&s.config.postgres)?,
        &s.config.postgres.application_name,
    )
    .await?;
    if slot::status(&client, &s.config.slot).await?.is_none() {
        bail!(
            "replication slot {} does not exist: run `cdc publication sync` and then `cdc slot create` first, so the first `cdc run` does not copy the imported rows back to Airtable",
            s.config.slot
        );
    }
    let ceiling = (s.client.config().base_rps.max(1) * 100) as f64;
    let importer = Importer::new(s.client.clone(), s.mapping.clone(), s.pool.clone()).await?;
    let mut shown = Shown {
        terminal: std::io::stderr().is_terminal(),
        bars: indicatif::MultiProgress::new(),
        current: None,
        ceiling,
    };
    let started = Instant::now();
    let summaries = importer.run(&Options { since, tables }, &mut shown).await?;
    let requests = s.client.budget().requests();
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>8} {:>13}",
        "table", "listed", "imported", "unchanged", "skipped", "dead-lettered"
    );
    for t in &summaries {
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>8} {:>13}",
            t.table, t.listed, t.imported, t.unchanged, t.skipped, t.dead_lettered
        );
    }
    let listed: u64 = summaries.iter().map(|t| t.listed).sum();
    println!(
        "{listed} records in {:.1} s with {requests} Airtable requests",
        started.elapsed().as_secs_f64()
    );
    let lost: u64 = summaries.iter().map(TableSummary::unaccounted).sum();
    if lost > 0 {
        bail!("{lost} record(s) are unaccounted for");
    }
    let parked: u64 = summaries.iter().map(|t| t.dead_lettered).sum();
    if parked > 0 {
        println!("{parked} record(s) were dead-lettered: `cdc dlq list` shows them with their codes; fix them in Airtable and run `cdc import` again");
    }
    Ok(())
}

pub async fn verify(
    table: Option<String>,
    sample: Option<usize>,
    json: bool,
    repair: Option<Duration>,
) -> anyhow::Result<()> {
    let s = sides().await?;
    let verifier = Verifier::new(s.client.clone(), s.mapping.clone(), s.pool.clone()).await?;
    let tables: Vec<_> = match &table {
        Some(t) => {
            vec![s.mapping.table_id(t).with_context(|| format!("{t} is not a mapped table"))?]
        }
        None => s.mapping.table_ids().collect(),
    };
    let mut parity = Vec::new();
    for ti in tables {
        parity.push(verifier.table(ti, sample).await?);
    }
    let Some(wait) = repair else {
        if json {
            println!("{}", serde_json::to_string_pretty(&parity)?);
        } else {
            print_parity(&parity, s.client.budget().requests());
        }
        return equal(&parity);
    };
    if !json {
        print_parity(&parity, s.client.budget().requests());
    }
    let repairer =
        Repairer { client: s.client.clone(), mapping: s.mapping.clone(), pool: s.pool.clone() };
    let mut repairs = Vec::new();
    for p in parity.iter().filter(|p| !p.mismatches.is_empty()) {
        let r = repairer.repair(p).await?;
        if !json {
            println!(
                "repaired {}: {} re-sent, {} re-applied, {} re-imported, {} deleted in Postgres, {} duplicates removed",
                r.table, r.resent, r.reapplied, r.reimported, r.deleted_in_postgres, r.duplicates_removed
            );
            for l in &r.left {
                println!("  left: {l}");
            }
        }
        repairs.push(r);
    }
    let jobs: Vec<JobId> = repairs.iter().flat_map(|r| r.jobs.iter().copied()).collect();
    wait_for_jobs(&s.pool, &jobs, wait, json).await?;
    // The repaired tables again: the repair counts once verify agrees.
    let mut after = Vec::new();
    for r in &repairs {
        if let Some(ti) = s.mapping.table_id(&r.table) {
            after.push(verifier.table(ti, sample).await?);
        }
    }
    if json {
        let out = serde_json::json!({ "before": parity, "repairs": repairs, "after": after });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if !after.is_empty() {
        println!("after the repair:");
        print_parity(&after, s.client.budget().requests());
    }
    equal(&after)
}

fn equal(parity: &[TableParity]) -> anyhow::Result<()> {
    let drift: usize = parity.iter().map(|p| p.mismatches.len()).sum();
    if drift > 0 {
        bail!("{drift} mismatch(es) between Postgres and Airtable");
    }
    Ok(())
}

/// Until the repair's backfill jobs are done: `cdc run` writes them.
async fn wait_for_jobs(
    pool: &sqlx::PgPool,
    jobs: &[JobId],
    wait: Duration,
    json: bool,
) -> anyhow::Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    if !json {
        println!(
            "waiting up to {} s for `cdc run` to write repair job(s) {jobs:?}",
            wait.as_secs()
        );
    }
    let deadline = Instant::now() + wait;
    loop {
        let open: Vec<JobId> = backfill::store::by_ids(pool, jobs)
            .await?
            .into_iter()
            .filter(|j| matches!(j.state, JobState::Pending | JobState::Running))
            .map(|j| j.id)
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("repair job(s) {open:?} are not done after {} s: `cdc run` writes them (is it running? `cdc backfill status` shows them); run `cdc verify` again once they are done", wait.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_parity(parity: &[TableParity], requests: u64) {
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9}",
        "table", "postgres", "airtable", "compared", "mismatch"
    );
    for p in parity {
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>9}",
            p.table,
            p.postgres_rows,
            p.airtable_records,
            p.compared,
            p.mismatches.len()
        );
    }
    for m in parity.iter().flat_map(|p| &p.mismatches) {
        let id = m.pg_id.map(|u| u.to_string()).unwrap_or_else(|| "-".into());
        let rec = m.record_id.as_deref().unwrap_or("-");
        match m.kind {
            DriftKind::Field => println!(
                "{} {id} {rec} {}: postgres {} | airtable {}",
                m.table,
                m.field.as_deref().unwrap_or("-"),
                m.postgres,
                m.airtable
            ),
            kind => println!("{} {id} {rec}: {}", m.table, kind.as_str()),
        }
    }
    let mut by_kind: HashMap<&str, usize> = HashMap::new();
    for m in parity.iter().flat_map(|p| &p.mismatches) {
        *by_kind.entry(m.kind.as_str()).or_default() += 1;
    }
    println!("{requests} Airtable requests; mismatches by kind: {by_kind:?}");
}
