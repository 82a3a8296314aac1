//! The mirror module's semantics (convex/mirror.ts), kept in step with it by the shared
//! vectors (convex/tests/vectors.json): a compare-and-set on version, tombstones, one
//! transaction per call, and Convex's limits.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// The most changes one call carries.
pub const MAX_CHANGES: usize = 100;
/// Convex's limit on one document.
pub const MAX_DOC_BYTES: usize = 1 << 20;
/// Convex's limit on a function's arguments.
pub const MAX_ARGS_BYTES: usize = 16 << 20;
/// The most documents one snapshot page returns.
pub const MAX_PAGE: usize = 1000;

/// Counts what is written (a document's size without building its text).
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One change as the daemon sends it.
#[derive(Debug, Clone, Deserialize)]
pub struct Change {
    pub table: String,
    pub id: String,
    pub version: String,
    pub op: String,
    #[serde(default)]
    pub doc: Option<Value>,
}

/// A stored document: the row's state at `version`, or its tombstone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Doc {
    pub id: String,
    pub version: String,
    pub deleted: bool,
    pub doc: Value,
}

/// What one call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub applied: u64,
    pub stale: u64,
}

/// One applied change, in order (for tests that check no document went backwards).
#[derive(Debug, Clone)]
pub struct Applied {
    pub table: String,
    pub id: String,
    pub version: u64,
    pub doc: Value,
}

#[derive(Debug, Default)]
pub struct Store {
    /// table -> pgId -> document; only the mirrored tables exist.
    tables: HashMap<String, BTreeMap<String, Doc>>,
    pub history: Option<Vec<Applied>>,
}

fn version(v: &str, at: &str) -> Result<u64, String> {
    let canonical = v == "0" || (!v.is_empty() && !v.starts_with('0') && v.len() <= 20);
    match v.parse::<u64>() {
        Ok(n) if canonical && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{at}: version {} is not a decimal LSN", json!(v))),
    }
}

impl Store {
    pub fn new(tables: &[String], keep_history: bool) -> Self {
        Self {
            tables: tables.iter().map(|t| (t.clone(), BTreeMap::new())).collect(),
            history: keep_history.then(Vec::new),
        }
    }

    fn mirrored(&self, table: &str, at: &str) -> Result<(), String> {
        if self.tables.contains_key(table) {
            Ok(())
        } else {
            Err(format!("{at}: table {} is not mirrored", json!(table)))
        }
    }

    /// mirror:apply. All or nothing: every change is checked before any is applied.
    pub fn apply(&mut self, changes: Vec<Change>) -> Result<Outcome, String> {
        if changes.len() > MAX_CHANGES {
            return Err(format!("at most {MAX_CHANGES} changes per call, got {}", changes.len()));
        }
        let mut checked = Vec::with_capacity(changes.len());
        for (i, mut c) in changes.into_iter().enumerate() {
            let at = format!("change {i} ({} {})", c.table, c.id);
            self.mirrored(&c.table, &at)?;
            if c.id.is_empty() {
                return Err(format!("{at}: empty id"));
            }
            let v = version(&c.version, &at)?;
            let doc = match c.op.as_str() {
                "upsert" => match c.doc.take() {
                    Some(Value::Object(m)) => {
                        let mut count = ByteCount(0);
                        let _ = serde_json::to_writer(&mut count, &m);
                        let bytes = count.0;
                        if bytes > MAX_DOC_BYTES {
                            return Err(format!(
                                "{at}: document too large ({bytes} bytes, at most {MAX_DOC_BYTES})"
                            ));
                        }
                        Some(Value::Object(m))
                    }
                    _ => return Err(format!("{at}: an upsert needs its doc as an object")),
                },
                "delete" => None,
                other => return Err(format!("{at}: op {} is not upsert or delete", json!(other))),
            };
            checked.push((c, v, doc));
        }
        let mut out = Outcome::default();
        for (c, v, doc) in checked {
            let c: Change = c;
            let table = self.tables.entry(c.table.clone()).or_default();
            // Equal versions apply: the same change again, or a later one of its transaction.
            if table.get(&c.id).is_some_and(|d| d.version.parse::<u64>().unwrap_or(0) > v) {
                out.stale += 1;
                continue;
            }
            let deleted = doc.is_none();
            let doc = doc.unwrap_or(Value::Null);
            if let Some(h) = self.history.as_mut() {
                h.push(Applied {
                    table: c.table.clone(),
                    id: c.id.clone(),
                    version: v,
                    doc: doc.clone(),
                });
            }
            table.insert(
                c.id.clone(),
                Doc { id: c.id.clone(), version: v.to_string(), deleted, doc },
            );
            out.applied += 1;
        }
        Ok(out)
    }

    /// mirror:snapshot: a page in pgId order after `cursor` (the last id of the page before).
    pub fn snapshot(
        &self,
        table: &str,
        cursor: Option<&str>,
        num_items: f64,
    ) -> Result<Value, String> {
        self.mirrored(table, "snapshot")?;
        let size = (num_items.floor() as i64).clamp(1, MAX_PAGE as i64) as usize;
        let docs = &self.tables[table];
        let mut rest = match cursor {
            Some(c) => {
                docs.range::<str, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
            }
            None => docs.range::<str, _>(..),
        };
        let page: Vec<&Doc> = rest.by_ref().take(size).map(|(_, d)| d).collect();
        let is_done = rest.next().is_none();
        let cursor = page.last().map(|d| d.id.clone()).unwrap_or_default();
        Ok(json!({ "page": page, "isDone": is_done, "continueCursor": cursor }))
    }

    /// A table's documents in pgId order (None: not mirrored).
    pub fn table(&self, table: &str) -> Option<Vec<Doc>> {
        self.tables.get(table).map(|t| t.values().cloned().collect())
    }

    /// Sets a document behind the daemon's back (a planted drift); None removes it.
    pub fn plant(&mut self, table: &str, id: &str, doc: Option<Map<String, Value>>) {
        let Some(t) = self.tables.get_mut(table) else { return };
        match doc {
            None => {
                t.remove(id);
            }
            Some(d) => {
                let version = t.get(id).map_or_else(|| "0".to_owned(), |x| x.version.clone());
                t.insert(
                    id.to_owned(),
                    Doc { id: id.to_owned(), version, deleted: false, doc: Value::Object(d) },
                );
            }
        }
    }
}
