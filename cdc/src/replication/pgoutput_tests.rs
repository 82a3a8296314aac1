//! Decoding captured pgoutput bytes (fixtures/pgoutput.hex, from PostgreSQL 15) for every
//! message type and value type, and garbage that must never panic.
//!
//! Captured with:
//! ```sql
//! CREATE TYPE mood AS ENUM ('happy', 'sad');
//! CREATE TABLE t (id uuid PRIMARY KEY, n int, big bigint, s smallint, num numeric, f float8,
//!   b bool, txt text, d date, ts timestamp, tstz timestamptz, j jsonb, arr uuid[], tags text[],
//!   m mood, blob text);                       -- blob stored EXTERNAL (TOAST, uncompressed)
//! CREATE TABLE full_t (id int PRIMARY KEY, v text);  -- REPLICA IDENTITY FULL
//! INSERT INTO t VALUES (…, repeat('x', 10000));      -- every type
//! UPDATE t SET n = 43 …;                             -- blob unchanged: 'u'
//! UPDATE t SET id = … ;                              -- key changed: old 'K'
//! INSERT/UPDATE/DELETE full_t …;                     -- old 'O'
//! DELETE FROM t; INSERT t (id, n NULL); TRUNCATE t, full_t;
//! BEGIN; pg_logical_emit_message(true, …); INSERT …; COMMIT;
//! pg_logical_emit_message(false, 'coach', 'standalone');
//! -- under replication origin coach_inbound: INSERT INTO full_t …
//! ```

use super::*;
use crate::replication::{
    decoder::Decoder,
    value::{self, Value},
    Event, Op,
};

fn fixtures() -> Vec<Bytes> {
    include_str!("fixtures/pgoutput.hex")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Bytes::from(hex::decode(l.trim()).expect("hex")))
        .collect()
}

fn decoded() -> Vec<Message> {
    fixtures().into_iter().map(|b| decode(b).expect("captured bytes decode")).collect()
}

#[test]
fn every_captured_message_decodes() {
    let tags: String = decoded()
        .iter()
        .map(|m| match m {
            Message::Begin { .. } => 'B',
            Message::Commit { .. } => 'C',
            Message::Origin { .. } => 'O',
            Message::Relation(_) => 'R',
            Message::Type { .. } => 'Y',
            Message::Insert { .. } => 'I',
            Message::Update { .. } => 'U',
            Message::Delete { .. } => 'D',
            Message::Truncate { .. } => 'T',
            Message::Message { .. } => 'M',
        })
        .collect();
    assert_eq!(tags, "BYRICBUCBUCBRICBUCBDCBDCBICBYRRTCBMRICMBOIC");
}

#[test]
fn begin_commit_relation_and_type_carry_their_fields() {
    let m = decoded();
    let Message::Begin { final_lsn, xid, .. } = &m[0] else { panic!("{:?}", m[0]) };
    assert!(*final_lsn > 0 && *xid > 0);
    let Message::Type { namespace, name, .. } = &m[1] else { panic!("{:?}", m[1]) };
    assert_eq!((namespace.as_str(), name.as_str()), ("public", "mood"));
    let Message::Relation(r) = &m[2] else { panic!("{:?}", m[2]) };
    assert_eq!((r.namespace.as_str(), r.name.as_str(), r.replica_identity), ("public", "t", b'd'));
    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "id", "n", "big", "s", "num", "f", "b", "txt", "d", "ts", "tstz", "j", "arr", "tags",
            "m", "blob"
        ]
    );
    assert!(r.columns[0].key && !r.columns[1].key);
    assert_eq!(r.columns[0].type_oid, value::oid::UUID);
    let Message::Commit { commit_lsn, end_lsn, .. } = &m[4] else { panic!("{:?}", m[4]) };
    assert!(end_lsn > commit_lsn);
    let Message::Relation(full) = &m[12] else { panic!("{:?}", m[12]) };
    assert_eq!((full.name.as_str(), full.replica_identity), ("full_t", b'f'));
}

/// Runs the fixtures through the relation cache into typed events.
fn events() -> Vec<Event> {
    let mut d = Decoder::default();
    decoded().into_iter().filter_map(|m| d.event(m).expect("event")).collect()
}

fn changes() -> Vec<crate::replication::RowChange> {
    events()
        .into_iter()
        .filter_map(|e| if let Event::Change(c) = e { Some(c) } else { None })
        .collect()
}

#[test]
fn an_insert_carries_every_value_type_typed() {
    let c = &changes()[0];
    assert_eq!(c.op, Op::Insert);
    let row = c.new.as_ref().expect("new");
    let j = |col: &str| row.get(col).expect(col).to_json();
    assert_eq!(j("id"), "00000000-0000-4000-8000-000000000001");
    assert_eq!(row.get("n"), Some(&Value::Int(42)));
    assert_eq!(row.get("big"), Some(&Value::Int(9_000_000_000)));
    assert_eq!(row.get("s"), Some(&Value::Int(-3)));
    assert_eq!(row.get("num"), Some(&Value::Numeric("12345.678".into())));
    assert_eq!(row.get("f"), Some(&Value::Float(1.5)));
    assert_eq!(row.get("b"), Some(&Value::Bool(true)));
    assert_eq!(row.get("txt"), Some(&Value::Text("héllo \"q\"".into())));
    assert_eq!(j("d"), "2026-11-21");
    assert_eq!(j("ts"), "2026-11-21T07:30:00.500");
    assert_eq!(j("tstz"), "2026-11-21T07:30:00.000Z");
    assert_eq!(j("j"), serde_json::json!({ "a": [1, 2] }));
    assert_eq!(j("arr"), serde_json::json!(["00000000-0000-4000-8000-000000000002"]));
    assert_eq!(j("tags"), serde_json::json!(["a", "b c", null]));
    assert_eq!(row.get("m"), Some(&Value::Enum("happy".into())));
    assert!(matches!(row.get("blob"), Some(Value::Text(s)) if s.len() == 10_000));
}

#[test]
fn updates_distinguish_no_old_key_only_old_full_old_and_unchanged_toast() {
    let c = changes();
    // UPDATE t SET n = 43: no old tuple; the TOASTed blob is unchanged, never null.
    assert_eq!((c[1].op, c[1].old.is_none()), (Op::Update, true));
    let new = c[1].new.as_ref().expect("new");
    assert_eq!(new.get("n"), Some(&Value::Int(43)));
    assert_eq!(new.get("blob"), Some(&Value::Unchanged));
    assert!(!new.to_json().contains_key("blob"), "unchanged columns are left out, not nulled");
    // The key changed: the old tuple is key-only; its non-key columns are placeholders.
    assert!(c[2].old_is_key_only);
    assert_eq!(
        c[2].old.as_ref().expect("old").get("id").expect("id").to_json(),
        "00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(c[2].key()[0].1.to_json(), "00000000-0000-4000-8000-000000000009");
    // REPLICA IDENTITY FULL: the whole old row.
    let full =
        c.iter().find(|x| x.relation.name == "full_t" && x.op == Op::Update).expect("full update");
    assert!(!full.old_is_key_only);
    assert_eq!(full.old.as_ref().expect("old").get("v"), Some(&Value::Text("a".into())));
    let del =
        c.iter().find(|x| x.relation.name == "full_t" && x.op == Op::Delete).expect("full delete");
    assert_eq!(del.old.as_ref().expect("old").get("v"), Some(&Value::Text("b".into())));
    let del_t = c.iter().find(|x| x.relation.name == "t" && x.op == Op::Delete).expect("delete");
    assert!(del_t.old_is_key_only);
    assert_eq!(del_t.key()[0].1.to_json(), "00000000-0000-4000-8000-000000000009");
    let nulls = c
        .iter()
        .find(|x| {
            x.op == Op::Insert && x.new.as_ref().and_then(|r| r.get("n")) == Some(&Value::Null)
        })
        .expect("null insert");
    assert_eq!(nulls.new.as_ref().expect("new").get("txt"), Some(&Value::Null));
}

#[test]
fn truncate_messages_and_origin() {
    let e = events();
    let t = e
        .iter()
        .find_map(|x| {
            if let Event::Truncate { relations, cascade, .. } = x {
                Some((relations.iter().map(|r| r.name.clone()).collect::<Vec<_>>(), *cascade))
            } else {
                None
            }
        })
        .expect("truncate");
    assert_eq!(t, (vec!["t".to_owned(), "full_t".to_owned()], false));
    let msgs: Vec<(bool, String, Bytes)> = e
        .iter()
        .filter_map(|x| {
            if let Event::Message { transactional, prefix, content, .. } = x {
                Some((*transactional, prefix.clone(), content.clone()))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        msgs,
        vec![
            (true, "coach".into(), Bytes::from("in-tx")),
            (false, "coach".into(), Bytes::from("standalone"))
        ]
    );
    let origin = decoded().into_iter().find_map(|m| {
        if let Message::Origin { name, .. } = m {
            Some(name)
        } else {
            None
        }
    });
    assert_eq!(origin.as_deref(), Some("coach_inbound"));
}

#[test]
fn a_later_relation_message_replaces_the_cached_one() {
    let mut d = Decoder::default();
    let rel = |cols: &[&str]| {
        Message::Relation(RelationBody {
            id: 7,
            namespace: "public".into(),
            name: "x".into(),
            replica_identity: b'd',
            columns: cols
                .iter()
                .map(|c| ColumnBody {
                    key: *c == "id",
                    name: (*c).into(),
                    type_oid: value::oid::INT4,
                    type_modifier: -1,
                })
                .collect(),
        })
    };
    d.event(rel(&["id", "a"])).expect("rel");
    d.event(rel(&["id", "a", "b"])).expect("altered");
    let ins = Message::Insert {
        relation_id: 7,
        new: Tuple(vec![
            Cell::Text(Bytes::from("1")),
            Cell::Text(Bytes::from("2")),
            Cell::Text(Bytes::from("3")),
        ]),
    };
    let Some(Event::Change(c)) = d.event(ins).expect("insert") else { panic!() };
    assert_eq!(c.new.expect("new").get("b"), Some(&Value::Int(3)));
    let stale = Message::Insert { relation_id: 7, new: Tuple(vec![Cell::Text(Bytes::from("1"))]) };
    assert!(d.event(stale).is_err(), "a tuple that does not fit its relation is an error");
    assert!(d.event(Message::Insert { relation_id: 99, new: Tuple(vec![]) }).is_err());
}

#[test]
fn truncated_and_corrupted_captures_are_errors_never_panics() {
    for msg in fixtures() {
        for cut in 0..msg.len() {
            let _ = decode(msg.slice(..cut));
        }
        assert!(decode(msg.slice(..msg.len().saturating_sub(1))).is_err() || msg.len() <= 1);
        let mut extra = msg.to_vec();
        extra.push(0);
        assert!(decode(Bytes::from(extra)).is_err(), "trailing bytes");
        // Flip every byte once.
        for i in 0..msg.len() {
            let mut b = msg.to_vec();
            b[i] ^= 0xff;
            let _ = decode(Bytes::from(b));
        }
    }
    assert_eq!(decode(Bytes::new()), Err(DecodeError::Empty));
    assert!(matches!(decode(Bytes::from_static(b"Z")), Err(DecodeError::UnknownTag(b'Z'))));
    // Huge counts must not allocate what the input cannot hold.
    assert!(decode(Bytes::from_static(b"I\0\0\0\x01N\x7f\xff")).is_err());
    assert!(decode(Bytes::from_static(b"T\x7f\xff\xff\xff\0")).is_err());
}

#[test]
fn seeded_random_garbage_never_panics() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(0xC0DE);
    let tags = b"BCORYIUDTMZ";
    for _ in 0..50_000 {
        let len = rng.random_range(0..64);
        let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if let Some(first) = b.first_mut() {
            *first = tags[rng.random_range(0..tags.len())];
        }
        let _ = decode(Bytes::from(b));
    }
}
