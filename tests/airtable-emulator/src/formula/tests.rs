use super::*;
use crate::model::{
    field::Field,
    table::{Record, Table},
};
use chrono::TimeZone;
use std::collections::HashMap;

fn table() -> (Table, Record) {
    let f = |id: &str, name: &str, kind: &str| Field {
        id: id.into(),
        name: name.into(),
        kind: kind.into(),
        options: json!({}),
    };
    let t = Table::new(
        "tblAAAAAAAAAAAAAA".into(),
        "T".into(),
        vec![
            f("fldName0000000001", "Name", "singleLineText"),
            f("fldQty00000000001", "Qty", "number"),
            f("fldDone0000000001", "Done", "checkbox"),
            f("fldWhen0000000001", "When", "dateTime"),
            f("fldEmpty000000001", "Empty", "singleLineText"),
        ],
        false,
    );
    let mut cells = HashMap::new();
    cells.insert("fldName0000000001".to_owned(), json!("O'Brien"));
    cells.insert("fldQty00000000001".to_owned(), json!(3));
    cells.insert("fldDone0000000001".to_owned(), json!(true));
    cells.insert("fldWhen0000000001".to_owned(), json!("2024-03-01T10:00:00.000Z"));
    let at = Utc.with_ymd_and_hms(2024, 3, 1, 10, 5, 0).single().expect("time");
    (t, Record { id: "recA1b2C3d4E5f6G7".into(), created: at, modified: at, auto_number: 1, cells })
}

fn check(src: &str) -> bool {
    let (t, r) = table();
    let e = parse(src, &t).unwrap_or_else(|e| panic!("{src}: {e:?}"));
    eval(&e, &t, &r).map(|v| v.truthy()).unwrap_or(false)
}

#[test]
fn equality_on_text_and_numbers() {
    assert!(check("{Name} = 'O\\'Brien'"));
    assert!(check("{Name} = \"O'Brien\""));
    assert!(!check("{Name} = 'obrien'"));
    assert!(check("{Qty} = 3"));
    assert!(check("{Qty} = '3'"));
    assert!(check("{fldQty00000000001} >= 2.5"));
    assert!(check("{Qty} != 4"));
    assert!(check("{Empty} = ''"));
    assert!(check("{Empty} = BLANK()"));
    assert!(!check("{Empty}"));
}

#[test]
fn logic_record_id_and_times() {
    assert!(check("AND({Qty} > 1, OR({Name} = 'x', {Done}), NOT({Qty} = 9))"));
    assert!(check("RECORD_ID() = 'recA1b2C3d4E5f6G7'"));
    assert!(check("OR(RECORD_ID()='recA1b2C3d4E5f6G7', RECORD_ID()='recOLD0000000002b')"));
    assert!(check("IS_AFTER(LAST_MODIFIED_TIME(), '2024-03-01T10:00:00Z')"));
    assert!(!check("IS_AFTER(LAST_MODIFIED_TIME(), '2024-03-01T10:05:00Z')"));
    assert!(check("IS_BEFORE({When}, DATETIME_PARSE('2024-03-02'))"));
    assert!(check("LAST_MODIFIED_TIME() > '2024-03-01T10:04:59.000Z'"));
    assert!(check("CREATED_TIME() <= '2024-03-01T10:05:00Z'"));
    assert!(check("IS_SAME({When}, '2024-03-01', 'day')"));
    assert!(check("{Name} & '!' = \"O'Brien!\""));
    assert!(check("{Qty} * 2 + 1 = 7"));
    assert!(check("LOWER({Name}) = \"o'brien\""));
}

#[test]
fn unsupported_formulas_are_invalid_never_match_all() {
    let (t, _) = table();
    for bad in [
        "",
        "{Nope} = 1",
        "SWITCH({Qty}, 1, 2)",
        "{Qty} = ",
        "AND(",
        "'open",
        "{Qty} == 1",
        "NOT()",
        "RECORD_ID(1)",
    ] {
        assert!(parse(bad, &t).is_err(), "{bad:?} must be invalid");
    }
}
