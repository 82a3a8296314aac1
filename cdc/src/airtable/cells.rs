//! Postgres values (as JSON) to Airtable cells, by the mapped field type.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use schema::mapping::FieldKind;
use serde_json::{json, Value};

/// Airtable's text fields hold at most this many characters (long text's documented limit;
/// the API answers a longer value with a rejection of the whole batch).
pub const MAX_TEXT_CHARS: usize = 100_000;

/// Airtable dates are ISO 8601 with a four-digit year.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Why a Postgres value cannot become a cell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CellError {
    /// The field type cannot hold this value (infinity, NaN, a year past 9999, text past
    /// [`MAX_TEXT_CHARS`], a string in a checkbox): the row is dead-lettered, the rest syncs.
    #[error("{0}")]
    Unrepresentable(String),
    /// The mapping names a field type this build does not write (refused at start).
    #[error("unsupported field type {0}")]
    UnsupportedType(String),
}

impl CellError {
    /// The stable dead-letter code.
    pub fn code(&self) -> &'static str {
        match self {
            CellError::Unrepresentable(_) => "UNREPRESENTABLE_VALUE",
            CellError::UnsupportedType(_) => "UNSUPPORTED_FIELD_TYPE",
        }
    }
}

fn text(v: &Value, sep: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            a.iter().filter(|x| !x.is_null()).map(|x| text(x, sep)).collect::<Vec<_>>().join(sep)
        }
        other => other.to_string(),
    }
}

/// `2026-11-21` with a year Airtable holds; a timestamp's date part counts.
fn date(s: &str) -> Option<NaiveDate> {
    if s.ends_with("BC") {
        return None;
    }
    let day = match s.char_indices().nth(10) {
        Some((i, 'T' | ' ')) if s[i + 1..].starts_with(|c: char| c.is_ascii_digit()) => &s[..i],
        Some(_) => return None,
        None => s,
    };
    if day.len() != 10 || !day.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok().filter(|d| YEARS.contains(&d.year()))
}

/// `2026-11-21T07:30:00.123+00:00` (to_jsonb) or `…Z` (the stream) -> `…000Z` UTC, with a
/// year Airtable holds.
fn date_time(s: &str) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|t| t.and_utc())
    })?;
    YEARS.contains(&t.year()).then(|| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Text within Airtable's limit.
fn bounded(s: String, kind: &FieldKind) -> Result<Value, CellError> {
    let n = s.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(CellError::Unrepresentable(format!(
            "{n} characters do not fit a {kind} field (at most {MAX_TEXT_CHARS})"
        )));
    }
    Ok(Value::String(s))
}

/// The cell for a non-link field of type `kind`.
pub fn cell(kind: &FieldKind, v: &Value) -> Result<Value, CellError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = || {
        let mut shown = v.to_string();
        if shown.len() > 80 {
            shown = format!("{}…", shown.chars().take(80).collect::<String>());
        }
        CellError::Unrepresentable(format!("{shown} does not fit a {kind} field"))
    };
    Ok(match kind {
        FieldKind::MultilineText => bounded(text(v, "\n"), kind)?,
        k if k.is_text() => bounded(text(v, ", "), kind)?,
        FieldKind::Number => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        },
        FieldKind::Checkbox => match v {
            Value::Bool(_) => v.clone(),
            _ => return Err(bad()),
        },
        FieldKind::Date => {
            let d = date(v.as_str().ok_or_else(bad)?).ok_or_else(bad)?;
            json!(d.format("%Y-%m-%d").to_string())
        }
        FieldKind::DateTime => json!(date_time(v.as_str().ok_or_else(bad)?).ok_or_else(bad)?),
        FieldKind::MultipleSelects => match v {
            Value::Array(a) => {
                json!(a.iter().filter(|x| !x.is_null()).map(|x| text(x, ", ")).collect::<Vec<_>>())
            }
            _ => json!([text(v, ", ")]),
        },
        _ => return Err(CellError::UnsupportedType(kind.to_string())),
    })
}

/// The uuids a link column holds (a uuid or a uuid[]).
pub fn link_ids(v: &Value) -> Vec<uuid::Uuid> {
    match v {
        Value::String(s) => s.parse().into_iter().collect(),
        Value::Array(a) => a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_cells_by_type() {
        assert_eq!(cell(&FieldKind::parse("singleLineText"), &json!("x")).expect("ok"), json!("x"));
        assert_eq!(
            cell(&FieldKind::parse("multilineText"), &json!(["a", "b"])).expect("ok"),
            json!("a\nb")
        );
        assert_eq!(cell(&FieldKind::parse("number"), &json!("12.5")).expect("ok"), json!(12.5));
        assert_eq!(
            cell(&FieldKind::parse("date"), &json!("2026-11-21")).expect("ok"),
            json!("2026-11-21")
        );
        assert_eq!(
            cell(&FieldKind::parse("dateTime"), &json!("2026-11-21T09:30:00.5+02:00")).expect("ok"),
            json!("2026-11-21T07:30:00.500Z")
        );
        assert_eq!(
            cell(&FieldKind::parse("dateTime"), &json!("2026-11-21T07:30:00.000Z")).expect("ok"),
            json!("2026-11-21T07:30:00.000Z")
        );
        assert_eq!(cell(&FieldKind::parse("checkbox"), &json!(true)).expect("ok"), json!(true));
        assert_eq!(
            cell(&FieldKind::parse("singleSelect"), &json!("habit")).expect("ok"),
            json!("habit")
        );
        assert_eq!(cell(&FieldKind::parse("email"), &Value::Null).expect("ok"), Value::Null);
        assert!(cell(&FieldKind::parse("checkbox"), &json!("yes")).is_err());
        assert!(cell(&FieldKind::parse("date"), &json!("soon")).is_err());
        assert_eq!(
            cell(&FieldKind::parse("date"), &json!("2026-11-21T07:30:00.000Z")).expect("ok"),
            json!("2026-11-21")
        );
        assert_eq!(link_ids(&json!(["00000000-0000-4000-8000-000000000001"])).len(), 1);
        assert_eq!(link_ids(&json!("00000000-0000-4000-8000-000000000001")).len(), 1);
    }

    #[test]
    fn values_airtable_cannot_hold_are_unrepresentable() {
        let unrepresentable = |kind: &str, v: Value| match cell(&FieldKind::parse(kind), &v) {
            Err(e @ CellError::Unrepresentable(_)) => e.code(),
            other => panic!("{kind} {v}: {other:?}"),
        };
        for v in [
            "infinity",
            "-infinity",
            "+10000-01-01",
            "10000-01-01",
            "-0043-03-15",
            "0044-03-15 BC",
            "0000-01-01",
        ] {
            assert_eq!(unrepresentable("date", json!(v)), "UNREPRESENTABLE_VALUE");
        }
        for v in ["infinity", "+10000-01-01T00:00:00.000Z", "-0043-03-15T10:00:00.000Z"] {
            assert_eq!(unrepresentable("dateTime", json!(v)), "UNREPRESENTABLE_VALUE");
        }
        for v in ["NaN", "Infinity", "-Infinity", &"9".repeat(400)] {
            assert_eq!(unrepresentable("number", json!(v)), "UNREPRESENTABLE_VALUE");
        }
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(unrepresentable("multilineText", json!(long)), "UNREPRESENTABLE_VALUE");
        assert_eq!(unrepresentable("singleLineText", json!(long)), "UNREPRESENTABLE_VALUE");
        // The limit itself fits, counted in characters, not bytes.
        assert!(
            cell(&FieldKind::parse("multilineText"), &json!("é".repeat(MAX_TEXT_CHARS))).is_ok()
        );
        assert_eq!(
            cell(&FieldKind::parse("date"), &json!("9999-12-31")).expect("ok"),
            json!("9999-12-31")
        );
        assert_eq!(
            cell(&FieldKind::parse("date"), &json!("0001-01-01")).expect("ok"),
            json!("0001-01-01")
        );
        assert_eq!(
            cell(&FieldKind::parse("rating"), &json!(1)).map_err(|e| e.code()),
            Err("UNSUPPORTED_FIELD_TYPE")
        );
    }
}
