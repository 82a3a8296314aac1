//! What a daemon replicates, whichever its destination: the one description `cdc run` builds
//! the publication, checks the catalog and queues backfills from.

use crate::destination::Target;
use schema::{mapping::Mapping, mirror::Mirror};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Replicated {
    pub target: Target,
    /// Tables parents first, each with the Postgres columns it sends (checked against the
    /// catalog at start).
    pub columns: Vec<(String, Vec<String>)>,
    /// table -> what it sends (derived fields included): remembered to backfill what a new
    /// mapping gains.
    pub shape: BTreeMap<String, Vec<String>>,
    /// Per table, the fields computed in SQL that go with whole rows (Airtable's progress).
    pub derived: BTreeMap<String, Vec<String>>,
    /// Changes the inbound side applied (under its replication origin) are skipped: they came
    /// from this destination. True for Airtable; the Convex mirror needs them.
    pub skip_inbound: bool,
}

impl Replicated {
    /// The tables the publication holds, as (schema, table): every table that sends, and the
    /// outbox. The one definition of "published".
    pub fn published_tables(&self) -> Vec<(String, String)> {
        self.columns
            .iter()
            .map(|(t, _)| t.as_str())
            .chain(std::iter::once("sync_outbox"))
            .map(|t| ("public".to_owned(), t.to_owned()))
            .collect()
    }
}

impl From<&Mapping> for Replicated {
    /// Airtable: the Postgres-owned columns of every mapped table that has any.
    fn from(m: &Mapping) -> Self {
        let sending = m.tables.iter().filter(|t| t.outbound().next().is_some());
        Self {
            target: Target::Airtable,
            columns: sending
                .clone()
                .map(|t| {
                    (t.table.name.to_owned(), t.columns.iter().map(|c| c.column.clone()).collect())
                })
                .collect(),
            shape: sending
                .clone()
                .map(|t| {
                    let sends = t.outbound().map(|c| c.column.clone());
                    let derived = t.derived.iter().map(|(c, _)| c.clone());
                    (t.table.name.to_owned(), sends.chain(derived).collect())
                })
                .collect(),
            derived: sending
                .filter(|t| !t.derived.is_empty())
                .map(|t| {
                    (t.table.name.to_owned(), t.derived.iter().map(|(c, _)| c.clone()).collect())
                })
                .collect(),
            skip_inbound: true,
        }
    }
}

impl From<&std::sync::Arc<Mapping>> for Replicated {
    fn from(m: &std::sync::Arc<Mapping>) -> Self {
        Self::from(m.as_ref())
    }
}

impl From<&Mirror> for Replicated {
    /// Convex: every mirrored column of every mirrored table, whoever owns it.
    fn from(m: &Mirror) -> Self {
        Self {
            target: Target::Convex,
            columns: m
                .tables
                .iter()
                .map(|t| (t.table.name.to_owned(), t.columns.clone()))
                .collect(),
            shape: m.tables.iter().map(|t| (t.table.name.to_owned(), t.columns.clone())).collect(),
            derived: BTreeMap::new(),
            skip_inbound: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airtable_publishes_what_it_did_before() {
        let m = Mapping::default_mapping().expect("mapping");
        assert_eq!(Replicated::from(&m).published_tables(), m.published_tables());
    }
}
