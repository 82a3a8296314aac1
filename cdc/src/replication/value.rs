//! Column values: pgoutput's text format turned into typed values by the column's type OID.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use serde_json::Value as Json;
use uuid::Uuid;

/// Built-in type OIDs (pg_type.dat).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// The element type of a built-in array type, if `oid` is one.
fn array_element(type_oid: u32) -> Option<u32> {
    Some(match type_oid {
        1000 => oid::BOOL,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1016 => oid::INT8,
        1009 => oid::TEXT,
        1014 => oid::BPCHAR,
        1015 => oid::VARCHAR,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1182 => oid::DATE,
        1183 => oid::TIME,
        1115 => oid::TIMESTAMP,
        1185 => oid::TIMESTAMPTZ,
        1231 => oid::NUMERIC,
        2951 => oid::UUID,
        199 => oid::JSON,
        3807 => oid::JSONB,
        _ => return None,
    })
}

/// A typed column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed column the update did not carry; never to be read as null.
    Unchanged,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Kept as text: numeric has more precision than any float.
    Numeric(String),
    Text(String),
    Uuid(Uuid),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Json(Json),
    Bytes(Vec<u8>),
    /// A value of a user-defined enum (announced by a Type message).
    Enum(String),
    Array(Vec<Value>),
}

/// Why a value's text does not parse as its column type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value {text:?} is not a valid {type_name}")]
pub struct ValueError {
    pub type_name: String,
    pub text: String,
}

impl Value {
    /// Parses pgoutput text `t` of a column with `type_oid`; `is_enum` tells user types
    /// announced as enums apart from unknown ones (kept as text).
    pub fn from_text(
        type_oid: u32,
        t: &str,
        is_enum: &dyn Fn(u32) -> bool,
    ) -> Result<Value, ValueError> {
        let bad = |name: &str| ValueError {
            type_name: name.to_owned(),
            text: t.chars().take(64).collect(),
        };
        Ok(match type_oid {
            oid::BOOL => match t {
                "t" => Value::Bool(true),
                "f" => Value::Bool(false),
                _ => return Err(bad("bool")),
            },
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => {
                Value::Int(t.parse().map_err(|_| bad("integer"))?)
            }
            oid::FLOAT4 | oid::FLOAT8 => Value::Float(match t {
                "NaN" => f64::NAN,
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => t.parse().map_err(|_| bad("float"))?,
            }),
            oid::NUMERIC => {
                let ok = t == "NaN"
                    || t.trim_start_matches('-').chars().all(|c| c.is_ascii_digit() || c == '.');
                if !ok || t.is_empty() {
                    return Err(bad("numeric"));
                }
                Value::Numeric(t.to_owned())
            }
            oid::TEXT | oid::VARCHAR | oid::BPCHAR => Value::Text(t.to_owned()),
            oid::UUID => Value::Uuid(Uuid::parse_str(t).map_err(|_| bad("uuid"))?),
            oid::DATE => {
                Value::Date(NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad("date"))?)
            }
            oid::TIME => {
                Value::Time(NaiveTime::parse_from_str(t, "%H:%M:%S%.f").map_err(|_| bad("time"))?)
            }
            oid::TIMESTAMP => Value::Timestamp(
                NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                    .map_err(|_| bad("timestamp"))?,
            ),
            oid::TIMESTAMPTZ => {
                Value::TimestampTz(parse_timestamptz(t).ok_or_else(|| bad("timestamptz"))?)
            }
            oid::JSON | oid::JSONB => {
                Value::Json(serde_json::from_str(t).map_err(|_| bad("json"))?)
            }
            oid::BYTEA => Value::Bytes(parse_bytea(t).ok_or_else(|| bad("bytea"))?),
            other => match array_element(other) {
                Some(element) => {
                    Value::Array(parse_array(t, element, is_enum).ok_or_else(|| bad("array"))??)
                }
                None if is_enum(other) => Value::Enum(t.to_owned()),
                None => Value::Text(t.to_owned()),
            },
        })
    }

    /// The value as JSON, as a destination would write it (dates as ISO strings).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null | Value::Unchanged => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null)
            }
            Value::Numeric(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Json::Number)
                .unwrap_or_else(|| Json::String(s.clone())),
            Value::Text(s) | Value::Enum(s) => Json::String(s.clone()),
            Value::Uuid(u) => Json::String(u.to_string()),
            Value::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
            Value::Time(t) => Json::String(t.format("%H:%M:%S").to_string()),
            Value::Timestamp(t) => Json::String(t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()),
            Value::TimestampTz(t) => Json::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            Value::Json(j) => j.clone(),
            Value::Bytes(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
            Value::Array(a) => Json::Array(a.iter().map(Value::to_json).collect()),
        }
    }
}

/// `2026-11-21 07:30:00.123+00`, `…+05:30`, `…-08`.
fn parse_timestamptz(t: &str) -> Option<DateTime<Utc>> {
    let (body, offset) = match t.rfind(['+', '-']) {
        Some(i) if i > 10 => (&t[..i], &t[i..]),
        _ => return None,
    };
    let naive = NaiveDateTime::parse_from_str(body, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let parts: Vec<i64> = offset[1..].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let seconds = match parts.as_slice() {
        [h] => h * 3600,
        [h, m] => h * 3600 + m * 60,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(naive.and_utc() - chrono::Duration::seconds(sign * seconds))
}

/// `\x0aff…` (hex format, the default since PostgreSQL 9.0).
fn parse_bytea(t: &str) -> Option<Vec<u8>> {
    let hex = t.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// Array literal `{a,"b c",NULL,{1,2}}`: quoted elements with backslash escapes, NULL,
/// nested arrays. Returns None on malformed syntax.
fn parse_array(
    t: &str,
    element: u32,
    is_enum: &dyn Fn(u32) -> bool,
) -> Option<Result<Vec<Value>, ValueError>> {
    // A dimension decoration (`[0:1]={…}`) precedes non-default bounds.
    let t = match t.find('=') {
        Some(i) if t.starts_with('[') => &t[i + 1..],
        _ => t,
    };
    let chars: Vec<char> = t.chars().collect();
    let mut pos = 0;
    let out = parse_level(&chars, &mut pos, element, is_enum)?;
    (pos == chars.len()).then_some(out)
}

fn parse_level(
    c: &[char],
    pos: &mut usize,
    element: u32,
    is_enum: &dyn Fn(u32) -> bool,
) -> Option<Result<Vec<Value>, ValueError>> {
    if c.get(*pos) != Some(&'{') {
        return None;
    }
    *pos += 1;
    let mut items = Vec::new();
    if c.get(*pos) == Some(&'}') {
        *pos += 1;
        return Some(Ok(items));
    }
    loop {
        match c.get(*pos)? {
            '{' => match parse_level(c, pos, element, is_enum)? {
                Ok(inner) => items.push(Value::Array(inner)),
                Err(e) => return Some(Err(e)),
            },
            '"' => {
                *pos += 1;
                let mut s = String::new();
                loop {
                    match c.get(*pos)? {
                        '\\' => {
                            s.push(*c.get(*pos + 1)?);
                            *pos += 2;
                        }
                        '"' => {
                            *pos += 1;
                            break;
                        }
                        ch => {
                            s.push(*ch);
                            *pos += 1;
                        }
                    }
                }
                match Value::from_text(element, &s, is_enum) {
                    Ok(v) => items.push(v),
                    Err(e) => return Some(Err(e)),
                }
            }
            _ => {
                let start = *pos;
                while !matches!(c.get(*pos)?, ',' | '}') {
                    *pos += 1;
                }
                let raw: String = c[start..*pos].iter().collect();
                if raw == "NULL" {
                    items.push(Value::Null);
                } else {
                    match Value::from_text(element, raw.trim(), is_enum) {
                        Ok(v) => items.push(v),
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
        match c.get(*pos)? {
            ',' => *pos += 1,
            '}' => {
                *pos += 1;
                return Some(Ok(items));
            }
            _ => return None,
        }
    }
}

/// Raw cell bytes as text (pgoutput text format is the server encoding, UTF-8 here).
pub fn cell_text(b: &Bytes) -> Result<&str, ValueError> {
    std::str::from_utf8(b)
        .map_err(|_| ValueError { type_name: "text".into(), text: "<invalid UTF-8>".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(oid: u32, t: &str) -> Value {
        Value::from_text(oid, t, &|o| o == 90000).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn scalars_parse_by_type() {
        assert_eq!(v(oid::BOOL, "t"), Value::Bool(true));
        assert_eq!(v(oid::INT2, "-7"), Value::Int(-7));
        assert_eq!(v(oid::INT8, "9223372036854775807"), Value::Int(i64::MAX));
        assert_eq!(
            v(oid::NUMERIC, "12345678901234567890.123"),
            Value::Numeric("12345678901234567890.123".into())
        );
        assert!(matches!(v(oid::FLOAT8, "NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(v(oid::TEXT, "héllo"), Value::Text("héllo".into()));
        assert_eq!(
            v(oid::UUID, "00000000-0000-4000-8000-000000000001").to_json(),
            "00000000-0000-4000-8000-000000000001"
        );
        assert_eq!(v(oid::DATE, "2026-11-21").to_json(), "2026-11-21");
        assert_eq!(v(oid::TIMESTAMP, "2026-11-21 07:30:00.5").to_json(), "2026-11-21T07:30:00.500");
        assert_eq!(
            v(oid::TIMESTAMPTZ, "2026-11-21 09:30:00+02").to_json(),
            "2026-11-21T07:30:00.000Z"
        );
        assert_eq!(
            v(oid::TIMESTAMPTZ, "2026-11-21 02:00:00.123456-05:30").to_json(),
            "2026-11-21T07:30:00.123Z"
        );
        assert_eq!(
            v(oid::JSONB, r#"{"a": [1, 2]}"#),
            Value::Json(serde_json::json!({ "a": [1, 2] }))
        );
        assert_eq!(v(oid::BYTEA, "\\x00ff"), Value::Bytes(vec![0, 255]));
        assert_eq!(v(90000, "active"), Value::Enum("active".into()));
        assert_eq!(v(90001, "whatever"), Value::Text("whatever".into()));
    }

    #[test]
    fn arrays_with_quotes_nulls_and_nesting() {
        assert_eq!(
            v(2951, "{00000000-0000-4000-8000-000000000001}").to_json(),
            serde_json::json!(["00000000-0000-4000-8000-000000000001"])
        );
        assert_eq!(
            v(1009, r#"{a,"b c","with \"quote\"",NULL,""}"#),
            Value::Array(vec![
                Value::Text("a".into()),
                Value::Text("b c".into()),
                Value::Text("with \"quote\"".into()),
                Value::Null,
                Value::Text(String::new()),
            ])
        );
        assert_eq!(v(1007, "{{1,2},{3,4}}").to_json(), serde_json::json!([[1, 2], [3, 4]]));
        assert_eq!(v(1007, "{}"), Value::Array(vec![]));
        assert_eq!(v(1007, "[0:1]={5,6}").to_json(), serde_json::json!([5, 6]));
    }

    #[test]
    fn malformed_values_are_errors() {
        for (oid, t) in [
            (oid::BOOL, "yes"),
            (oid::INT4, "1.5"),
            (oid::UUID, "nope"),
            (oid::DATE, "2026-02-30"),
            (oid::TIMESTAMPTZ, "2026-11-21"),
            (oid::JSONB, "{"),
            (1007, "{1,2"),
            (1007, "{1,x}"),
            (oid::BYTEA, "\\x0"),
            (oid::NUMERIC, "1e5x"),
        ] {
            assert!(Value::from_text(oid, t, &|_| false).is_err(), "{oid} {t:?}");
        }
    }
}
