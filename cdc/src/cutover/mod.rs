//! The cutover from an existing Airtable base, one operator workflow (the README's
//! "Cutover" section):
//! 1. [`check`]: is the base ready for the mapping (tables, fields, types, the merge field),
//!    and with `--apply` create what is missing through the Meta API;
//! 2. [`import`]: every record of every mapped table into Postgres, parents first, under the
//!    inbound replication origin, resumable and idempotent, reads only;
//! 3. [`verify`]: Postgres against Airtable, table by table and field by field, and
//!    [`repair`]: each drift set right by the side that owns it.

pub mod check;
pub mod import;
pub mod repair;
pub mod verify;

use crate::airtable::{AirtableClient, AirtableError, Lane};
use schema::mapping::MappedTable;
use serde_json::Value;

/// Every Airtable field of `t` the cutover reads: each mapped column's, the derived ones
/// (verify compares them; the import ignores them) and the merge field.
pub fn read_fields(t: &MappedTable, merge_field: &str) -> Vec<String> {
    let mut f: Vec<String> = t.columns.iter().map(|c| c.field.field.clone()).collect();
    f.extend(t.derived.iter().map(|(_, d)| d.field.clone()));
    f.push(merge_field.to_owned());
    f
}

/// Every record of a table, page by page (≤ 100 records held at a time). An expired listing
/// starts over, so a page may hold records seen before (what the caller does with them must
/// be idempotent).
pub struct Pages<'a> {
    client: &'a AirtableClient,
    table: &'a str,
    formula: Option<&'a str>,
    fields: &'a [String],
    offset: Option<String>,
    done: bool,
}

impl<'a> Pages<'a> {
    pub fn new(
        client: &'a AirtableClient,
        table: &'a str,
        formula: Option<&'a str>,
        fields: &'a [String],
    ) -> Self {
        Self { client, table, formula, fields, offset: None, done: false }
    }

    /// The next page; `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>, AirtableError> {
        while !self.done {
            let listed = self
                .client
                .list_page(
                    Lane::Bulk,
                    self.table,
                    self.formula,
                    self.fields,
                    self.offset.as_deref(),
                )
                .await;
            let (records, next) = match listed {
                Err(e) if e.is_expired_listing() => {
                    self.offset = None;
                    continue;
                }
                other => other?,
            };
            self.done = next.is_none();
            self.offset = next;
            return Ok(Some(records));
        }
        Ok(None)
    }
}
