//! What a start queues: on a new slot every mapped table (its rows never streamed); on a known
//! slot what the mapping gained since the last start (a table, or columns of one). The
//! mapping's outbound shape is remembered in `sync_checkpoint` for the next start.

use super::{store, JobId, NewJob, Reason};
use crate::{destination::Target, replicated::Replicated};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Where the last start's shape is remembered, per destination (Airtable's keeps its name).
fn shape_key(target: Target) -> &'static str {
    match target {
        Target::Airtable => "outbound.mapping",
        Target::Convex => "convex.mapping",
    }
}

/// The jobs a change of shape needs: a new table whole, new columns alone (a new derived
/// column re-sends the table whole, as derived fields go with whole rows).
fn gained(
    before: &BTreeMap<String, Vec<String>>,
    now: &BTreeMap<String, Vec<String>>,
    derived: &BTreeMap<String, Vec<String>>,
) -> Vec<NewJob> {
    let mut jobs = Vec::new();
    for (table, columns) in now {
        match before.get(table) {
            None => jobs.push(NewJob::whole(table.clone(), Reason::Mapping)),
            Some(had) => {
                let new: Vec<String> =
                    columns.iter().filter(|c| !had.contains(c)).cloned().collect();
                if new.is_empty() {
                    continue;
                }
                let derived = derived.get(table).is_some_and(|d| d.iter().any(|c| new.contains(c)));
                let mut job = NewJob::whole(table.clone(), Reason::Mapping);
                if !derived {
                    job.columns = Some(new);
                }
                jobs.push(job);
            }
        }
    }
    jobs
}

/// Queues what this start needs and remembers the mapping's shape, in one transaction.
/// `slot_created`: the slot is new, so every row that exists must be copied, and progress
/// intents written before it (never streamed) are dropped: the copy carries progress.
pub async fn at_start(
    pool: &PgPool,
    replicated: &Replicated,
    slot_created: bool,
) -> sqlx::Result<Vec<JobId>> {
    let now = replicated.shape.clone();
    let key = shape_key(replicated.target);
    let mut tx = pool.begin().await?;
    let before: Option<Value> =
        sqlx::query_scalar("SELECT value FROM sync_checkpoint WHERE name = $1 FOR UPDATE")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    let before: Option<BTreeMap<String, Vec<String>>> =
        before.and_then(|v| serde_json::from_value(v).ok());
    let jobs: Vec<NewJob> = if slot_created {
        if replicated.target == Target::Airtable {
            sqlx::query("DELETE FROM sync_outbox WHERE kind = 'progress'")
                .execute(&mut *tx)
                .await?;
        }
        // Parents first: the mirror's order, Airtable's mapping order.
        replicated.columns.iter().map(|(t, _)| NewJob::whole(t.clone(), Reason::Initial)).collect()
    } else {
        // A first start of this version on a known slot: what is there was synced already.
        before.as_ref().map(|b| gained(b, &now, &replicated.derived)).unwrap_or_default()
    };
    let jobs: Vec<NewJob> = jobs.into_iter().map(|j| j.to(replicated.target)).collect();
    let ids = store::queue(&mut tx, &jobs, false).await?;
    crate::postgres::checkpoint::write(&mut *tx, key, &json!(now)).await?;
    tx.commit().await?;
    for j in &jobs {
        tracing::info!(table = %j.table, columns = ?j.columns, reason = j.reason.as_str(), "queued a backfill");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_table_goes_whole_and_new_columns_alone() {
        let mapping = schema::mapping::Mapping::default_mapping().expect("mapping");
        let replicated = Replicated::from(&mapping);
        let now = replicated.shape.clone();
        assert!(gained(&now, &now, &replicated.derived).is_empty(), "same shape: nothing");

        let mut before = now.clone();
        before.remove("habit_usage");
        before.get_mut("personal_goals").expect("goals").retain(|c| c != "description");
        before.get_mut("programs").expect("programs").retain(|c| c != "percent_complete");
        let jobs = gained(&before, &now, &replicated.derived);
        let by_table: BTreeMap<&str, Option<Vec<String>>> =
            jobs.iter().map(|j| (j.table.as_str(), j.columns.clone())).collect();
        assert_eq!(by_table.len(), 3, "{by_table:?}");
        assert_eq!(by_table["habit_usage"], None);
        assert_eq!(by_table["personal_goals"], Some(vec!["description".to_owned()]));
        assert_eq!(by_table["programs"], None, "a derived field goes with whole rows");
    }
}
