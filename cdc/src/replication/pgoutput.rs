//! The pgoutput wire format, protocol version 1 (PostgreSQL docs, "Logical Replication
//! Message Formats"). `decode` is total: any input yields a message or an error, never a
//! panic, and values stay slices of the input (no copies).

use bytes::Bytes;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin {
        final_lsn: u64,
        commit_time: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time: i64,
    },
    /// The transaction was replayed from another node (or written under a replication
    /// origin, as the inbound sync does).
    Origin {
        commit_lsn: u64,
        name: String,
    },
    Relation(RelationBody),
    Type {
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation_id: u32,
        new: Tuple,
    },
    Update {
        relation_id: u32,
        old: Option<OldTuple>,
        new: Tuple,
    },
    Delete {
        relation_id: u32,
        old: OldTuple,
    },
    Truncate {
        options: u8,
        relation_ids: Vec<u32>,
    },
    /// `pg_logical_emit_message`.
    Message {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationBody {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default, `n` nothing, `f` full, `i` index.
    pub replica_identity: u8,
    pub columns: Vec<ColumnBody>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnBody {
    /// Part of the replica identity key.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// The old row of an update or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// 'K': only replica-identity columns carry values; the rest are null placeholders.
    Key(Tuple),
    /// 'O': the full old row (REPLICA IDENTITY FULL).
    Full(Tuple),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(pub Vec<Cell>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    /// An unchanged TOASTed value the server did not send: "unchanged", never null.
    Unchanged,
    Text(Bytes),
    Binary(Bytes),
}

/// Why bytes are not a pgoutput message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("message {tag:?} truncated reading {what}")]
    Truncated { tag: char, what: &'static str },
    #[error("message {tag:?}: {what}")]
    Invalid { tag: char, what: &'static str },
    #[error("message {tag:?} has {0} trailing bytes", tag = .1)]
    Trailing(usize, char),
}

struct Reader {
    buf: Bytes,
    pos: usize,
    tag: char,
}

impl Reader {
    fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated { tag: self.tag, what }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.truncated(what))?;
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(self.i32(what)? as u32)
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&b);
        Ok(i64::from_be_bytes(a))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(self.i64(what)? as u64)
    }

    /// A NUL-terminated string.
    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos..];
        let nul = rest.iter().position(|b| *b == 0).ok_or_else(|| self.truncated(what))?;
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| DecodeError::Invalid { tag: self.tag, what: "string is not UTF-8" })?
            .to_owned();
        self.pos += nul + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16("column count")?;
        if n < 0 {
            return Err(DecodeError::Invalid { tag: self.tag, what: "negative column count" });
        }
        // Each cell takes at least one byte: refuse counts the input cannot hold before
        // allocating for them.
        if n as usize > self.buf.len() - self.pos {
            return Err(self.truncated("tuple cells"));
        }
        let mut cells = Vec::with_capacity(n as usize);
        for _ in 0..n {
            cells.push(match self.u8("cell kind")? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32("cell length")?;
                    if len < 0 {
                        return Err(DecodeError::Invalid {
                            tag: self.tag,
                            what: "negative cell length",
                        });
                    }
                    let data = self.take(len as usize, "cell value")?;
                    if kind == b't' {
                        Cell::Text(data)
                    } else {
                        Cell::Binary(data)
                    }
                }
                _ => return Err(DecodeError::Invalid { tag: self.tag, what: "unknown cell kind" }),
            });
        }
        Ok(Tuple(cells))
    }

    fn finish(self, msg: Message) -> Result<Message, DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(msg),
            n => Err(DecodeError::Trailing(n, self.tag)),
        }
    }
}

/// Decodes one message (the payload of one XLogData).
pub fn decode(buf: Bytes) -> Result<Message, DecodeError> {
    let tag = *buf.first().ok_or(DecodeError::Empty)?;
    let mut r = Reader { buf, pos: 1, tag: tag as char };
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("final lsn")?,
            commit_time: r.i64("commit time")?,
            xid: r.u32("xid")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("flags")?,
            commit_lsn: r.u64("commit lsn")?,
            end_lsn: r.u64("end lsn")?,
            commit_time: r.i64("commit time")?,
        },
        b'O' => {
            Message::Origin { commit_lsn: r.u64("origin lsn")?, name: r.string("origin name")? }
        }
        b'R' => {
            let id = r.u32("relation id")?;
            let namespace = r.string("namespace")?;
            let name = r.string("relation name")?;
            let replica_identity = r.u8("replica identity")?;
            let n = r.i16("column count")?;
            if n < 0 || n as usize > r.buf.len() - r.pos {
                return Err(DecodeError::Invalid { tag: 'R', what: "bad column count" });
            }
            let mut columns = Vec::with_capacity(n as usize);
            for _ in 0..n {
                columns.push(ColumnBody {
                    key: r.u8("column flags")? & 1 == 1,
                    name: r.string("column name")?,
                    type_oid: r.u32("type oid")?,
                    type_modifier: r.i32("type modifier")?,
                });
            }
            Message::Relation(RelationBody { id, namespace, name, replica_identity, columns })
        }
        b'Y' => Message::Type {
            id: r.u32("type oid")?,
            namespace: r.string("namespace")?,
            name: r.string("type name")?,
        },
        b'I' => {
            let relation_id = r.u32("relation id")?;
            match r.u8("tuple marker")? {
                b'N' => Message::Insert { relation_id, new: r.tuple()? },
                _ => {
                    return Err(DecodeError::Invalid {
                        tag: 'I',
                        what: "expected new tuple marker N",
                    })
                }
            }
        }
        b'U' => {
            let relation_id = r.u32("relation id")?;
            let (old, marker) = match r.u8("tuple marker")? {
                b'K' => (Some(OldTuple::Key(r.tuple()?)), r.u8("new tuple marker")?),
                b'O' => (Some(OldTuple::Full(r.tuple()?)), r.u8("new tuple marker")?),
                m => (None, m),
            };
            if marker != b'N' {
                return Err(DecodeError::Invalid { tag: 'U', what: "expected new tuple marker N" });
            }
            Message::Update { relation_id, old, new: r.tuple()? }
        }
        b'D' => {
            let relation_id = r.u32("relation id")?;
            let old = match r.u8("tuple marker")? {
                b'K' => OldTuple::Key(r.tuple()?),
                b'O' => OldTuple::Full(r.tuple()?),
                _ => {
                    return Err(DecodeError::Invalid {
                        tag: 'D',
                        what: "expected old tuple marker K or O",
                    })
                }
            };
            Message::Delete { relation_id, old }
        }
        b'T' => {
            let n = r.i32("relation count")?;
            let options = r.u8("options")?;
            if n < 0 || (n as usize).saturating_mul(4) > r.buf.len() - r.pos {
                return Err(DecodeError::Invalid { tag: 'T', what: "bad relation count" });
            }
            let relation_ids = (0..n).map(|_| r.u32("relation id")).collect::<Result<_, _>>()?;
            Message::Truncate { options, relation_ids }
        }
        b'M' => {
            let flags = r.u8("flags")?;
            let lsn = r.u64("lsn")?;
            let prefix = r.string("prefix")?;
            let len = r.i32("content length")?;
            if len < 0 {
                return Err(DecodeError::Invalid { tag: 'M', what: "negative content length" });
            }
            let content = r.take(len as usize, "content")?;
            Message::Message { transactional: flags & 1 == 1, lsn, prefix, content }
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    r.finish(msg)
}

#[cfg(test)]
#[path = "pgoutput_tests.rs"]
mod tests;
