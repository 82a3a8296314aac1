use super::{Destination, DestinationError, Poison};
use crate::replication::{Event, Lsn};
use serde_json::json;
use std::io::Write;

/// Writes each change as one JSON line to stdout: a readable change feed for operators.
/// Acknowledges a commit once its lines are flushed.
#[derive(Debug, Default)]
pub struct LogDestination {
    acked: Lsn,
    last_commit: Lsn,
    xid: u32,
}

impl Destination for LogDestination {
    async fn handle(&mut self, event: Event) -> Result<(), DestinationError> {
        let line = match &event {
            Event::Begin { xid, .. } => {
                self.xid = *xid;
                return Ok(());
            }
            Event::Change(c) => json!({
                "xid": self.xid,
                "table": c.relation.name,
                "op": c.op.as_str(),
                "key": c.key().into_iter().map(|(k, v)| (k.to_owned(), v.to_json())).collect::<serde_json::Map<_, _>>(),
                "new": c.new.as_ref().map(|r| r.to_json()),
            }),
            Event::Truncate { relations, .. } => {
                json!({ "xid": self.xid, "op": "truncate", "tables": relations.iter().map(|r| &r.name).collect::<Vec<_>>() })
            }
            Event::Message { prefix, content, lsn, .. } => {
                json!({ "op": "message", "prefix": prefix, "lsn": lsn.to_string(), "bytes": content.len() })
            }
            Event::Commit { end_lsn, commit_time, .. } => {
                self.last_commit = *end_lsn;
                json!({ "xid": self.xid, "op": "commit", "lsn": end_lsn.to_string(), "commit_time": commit_time.to_rfc3339() })
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").map_err(|e| DestinationError::retry(format!("stdout: {e}")))?;
        if let Event::Message { transactional: false, lsn, .. } = event {
            self.last_commit = self.last_commit.max(lsn);
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DestinationError> {
        std::io::stdout().flush().map_err(|e| DestinationError::retry(format!("stdout: {e}")))?;
        self.acked = self.last_commit;
        Ok(())
    }

    fn acknowledged(&self) -> Lsn {
        self.acked
    }

    async fn isolate(&mut self, poison: Poison) -> Result<(), DestinationError> {
        let line = json!({
            "op": "isolated",
            "table": poison.table,
            "transaction": poison.transaction.to_string(),
            "ordinal": poison.ordinal,
            "reason": poison.reason,
        });
        writeln!(std::io::stdout().lock(), "{line}")
            .map_err(|e| DestinationError::retry(format!("stdout: {e}")))
    }
}
