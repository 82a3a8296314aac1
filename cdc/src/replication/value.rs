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

/// A typed column value. Decoding is total: every text Postgres can send for a column becomes
/// a value, so no stored value can stop the stream (what a destination cannot hold is its
/// call, row by row).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// An unchanged TOASTed column the update did not carry; never to be read as null.
    Unchanged,
    Bool(bool),
    Int(i64),
    /// Any float, `NaN` and `±Infinity` included.
    Float(f64),
    /// Kept as text: numeric has more precision than any float (and `NaN`, `±Infinity`).
    Numeric(String),
    Text(String),
    Uuid(Uuid),
    /// BC dates and years past 9999 included (as far as chrono reaches: ±262,142).
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Json(Json),
    Bytes(Vec<u8>),
    /// A value of a user-defined enum (announced by a Type message).
    Enum(String),
    Array(Vec<Value>),
    /// A value its type's typed form cannot hold, as the server's text: `infinity` and
    /// `-infinity` dates and timestamps, years beyond chrono's range, `24:00:00`, a JSON
    /// number beyond f64. It reaches a destination as that text.
    Special(String),
}

/// Why a value's text does not parse as its column type's typed form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value {text:?} is not a valid {type_name}")]
pub struct ValueError {
    pub type_name: String,
    pub text: String,
}

impl Value {
    /// Decodes pgoutput text `t` of a column with `type_oid`; `is_enum` tells user types
    /// announced as enums apart from unknown ones (kept as text). Total: a text the typed
    /// parsers refuse (Postgres sends none, but a new server version might) is kept as
    /// [`Value::Special`] and counted, never an error.
    pub fn from_text(type_oid: u32, t: &str, is_enum: &dyn Fn(u32) -> bool) -> Value {
        Value::parse(type_oid, t, is_enum).unwrap_or_else(|e| {
            metrics::counter!("cdc_values_untyped_total", "type" => e.type_name).increment(1);
            Value::Special(t.to_owned())
        })
    }

    /// The strict parser behind [`Value::from_text`]: the typed form, or why not.
    pub fn parse(
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
                let digits = t.strip_prefix('-').unwrap_or(t);
                let ok = matches!(t, "NaN" | "Infinity" | "-Infinity")
                    || (!digits.is_empty()
                        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                        && digits.chars().filter(|c| *c == '.').count() <= 1);
                if !ok {
                    return Err(bad("numeric"));
                }
                Value::Numeric(t.to_owned())
            }
            oid::TEXT | oid::VARCHAR | oid::BPCHAR => Value::Text(t.to_owned()),
            oid::UUID => Value::Uuid(Uuid::parse_str(t).map_err(|_| bad("uuid"))?),
            oid::DATE => match t {
                "infinity" | "-infinity" => Value::Special(t.to_owned()),
                _ => Value::Date(temporal::date(t).ok_or_else(|| bad("date"))?),
            },
            oid::TIME => match NaiveTime::parse_from_str(t, "%H:%M:%S%.f") {
                Ok(v) => Value::Time(v),
                // The one time chrono has no form for.
                Err(_) if t == "24:00:00" => Value::Special(t.to_owned()),
                Err(_) => return Err(bad("time")),
            },
            oid::TIMESTAMP => match t {
                "infinity" | "-infinity" => Value::Special(t.to_owned()),
                _ => Value::Timestamp(temporal::timestamp(t).ok_or_else(|| bad("timestamp"))?),
            },
            oid::TIMESTAMPTZ => match t {
                "infinity" | "-infinity" => Value::Special(t.to_owned()),
                _ => {
                    Value::TimestampTz(temporal::timestamptz(t).ok_or_else(|| bad("timestamptz"))?)
                }
            },
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

    /// The value as JSON, as a destination would write it: dates as ISO strings (years past
    /// 9999 and BC years in ISO 8601's expanded form, `+10000-01-01`, `-0043-03-15`); a float
    /// JSON has no number for, and any [`Value::Special`], as its Postgres text.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null | Value::Unchanged => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Json::Number(n),
                None if f.is_nan() => Json::String("NaN".into()),
                None if *f > 0.0 => Json::String("Infinity".into()),
                None => Json::String("-Infinity".into()),
            },
            Value::Numeric(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Json::Number)
                .unwrap_or_else(|| Json::String(s.clone())),
            Value::Text(s) | Value::Enum(s) | Value::Special(s) => Json::String(s.clone()),
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

/// Postgres's ISO output of dates and timestamps, BC and long years included.
mod temporal {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

    /// `2026-11-21`, `10000-01-01`, `0044-03-15 BC` (44 BC is the astronomical year -43).
    pub fn date(t: &str) -> Option<NaiveDate> {
        let (body, bc) = era(t);
        ymd(body, bc)
    }

    /// `2026-11-21 07:30:00.5`, with the same year forms as [`date`].
    pub fn timestamp(t: &str) -> Option<NaiveDateTime> {
        let (body, bc) = era(t);
        let (d, time) = body.split_once(' ')?;
        Some(ymd(d, bc)?.and_time(NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?))
    }

    /// `2026-11-21 07:30:00.123+00`, `…+05:30`, `…-08`, `…+00:53:28 BC` (local mean time).
    pub fn timestamptz(t: &str) -> Option<DateTime<Utc>> {
        let (body, bc) = era(t);
        let (d, rest) = body.split_once(' ')?;
        let i = rest.rfind(['+', '-'])?;
        let (time, offset) = (&rest[..i], &rest[i..]);
        let naive = ymd(d, bc)?.and_time(NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let parts: Vec<i64> =
            offset[1..].split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        let seconds = match parts.as_slice() {
            [h] => h * 3600,
            [h, m] => h * 3600 + m * 60,
            [h, m, s] => h * 3600 + m * 60 + s,
            _ => return None,
        };
        naive.and_utc().checked_sub_signed(chrono::Duration::seconds(sign * seconds))
    }

    fn era(t: &str) -> (&str, bool) {
        match t.strip_suffix(" BC") {
            Some(body) => (body, true),
            None => (t, false),
        }
    }

    fn ymd(d: &str, bc: bool) -> Option<NaiveDate> {
        let mut parts = d.splitn(3, '-');
        let (y, m, day) = (parts.next()?, parts.next()?, parts.next()?);
        if y.is_empty() || !y.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let year: i32 = y.parse().ok()?;
        let year = if bc { 1 - year } else { year };
        NaiveDate::from_ymd_opt(year, m.parse().ok()?, day.parse().ok()?)
    }
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
                match Value::parse(element, &s, is_enum) {
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
                    match Value::parse(element, raw.trim(), is_enum) {
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

/// Raw cell bytes as text. pgoutput's text format is the server encoding (UTF-8 here); a
/// byte sequence that is not UTF-8 (a SQL_ASCII database) is kept with replacement
/// characters rather than refused.
pub fn cell_text(b: &Bytes) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(oid: u32, t: &str) -> Value {
        Value::parse(oid, t, &|o| o == 90000).unwrap_or_else(|e| panic!("{e}"))
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
            assert!(Value::parse(oid, t, &|_| false).is_err(), "{oid} {t:?}");
            assert_eq!(Value::from_text(oid, t, &|_| false), Value::Special(t.into()), "total");
        }
    }

    #[test]
    fn every_value_postgres_stores_decodes() {
        let j = |oid: u32, t: &str| v(oid, t).to_json();
        assert_eq!(j(oid::DATE, "10000-01-01"), "+10000-01-01");
        assert_eq!(j(oid::DATE, "0044-03-15 BC"), "-0043-03-15");
        let total = |oid: u32, t: &str| Value::from_text(oid, t, &|_| false).to_json();
        assert_eq!(total(oid::DATE, "5874897-12-31"), "5874897-12-31", "past chrono: the text");
        assert_eq!(v(oid::DATE, "infinity"), Value::Special("infinity".into()));
        assert_eq!(v(oid::DATE, "-infinity"), Value::Special("-infinity".into()));
        assert_eq!(j(oid::TIMESTAMP, "10000-01-01 00:00:00"), "+10000-01-01T00:00:00.000");
        assert_eq!(j(oid::TIMESTAMP, "0044-03-15 10:00:00 BC"), "-0043-03-15T10:00:00.000");
        assert_eq!(v(oid::TIMESTAMP, "-infinity"), Value::Special("-infinity".into()));
        assert_eq!(
            j(oid::TIMESTAMPTZ, "0044-03-15 10:00:00+00:53:28 BC"),
            "-0043-03-15T09:06:32.000Z"
        );
        assert_eq!(
            total(oid::TIMESTAMPTZ, "294276-12-31 23:59:59.999999+00"),
            "294276-12-31 23:59:59.999999+00"
        );
        assert_eq!(v(oid::TIMESTAMPTZ, "infinity"), Value::Special("infinity".into()));
        assert_eq!(v(oid::TIME, "24:00:00"), Value::Special("24:00:00".into()));
        assert_eq!(j(oid::NUMERIC, "NaN"), "NaN");
        assert_eq!(j(oid::NUMERIC, "Infinity"), "Infinity");
        assert_eq!(j(oid::NUMERIC, "-Infinity"), "-Infinity");
        assert_eq!(j(oid::NUMERIC, "-0.5"), serde_json::json!(-0.5));
        assert_eq!(j(oid::FLOAT8, "NaN"), "NaN");
        assert_eq!(j(oid::FLOAT4, "-Infinity"), "-Infinity");
        assert_eq!(j(oid::FLOAT8, "1.7976931348623157e+308"), serde_json::json!(f64::MAX));
        assert_eq!(total(oid::JSONB, "1e400"), "1e400", "a JSON number past f64: the text");
        assert_eq!(j(1186, "1 year 2 mons 3 days 04:05:06"), "1 year 2 mons 3 days 04:05:06");
        assert_eq!(
            j(1182, "{infinity,NULL,2026-01-01}"),
            serde_json::json!(["infinity", null, "2026-01-01"])
        );
        assert_eq!(j(1231, "{NaN,1.5}"), serde_json::json!(["NaN", 1.5]));
        assert_eq!(j(1009, "{}"), serde_json::json!([]));
        assert_eq!(j(1009, "{NULL}"), serde_json::json!([null]));
        assert_eq!(cell_text(&Bytes::from_static(b"caf\xe9")), "caf\u{fffd}");
    }
}
