//! Postgres values (as JSON) to Airtable cells, by the mapped field type.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Value};

/// A value the field type cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CellError(pub String);

fn text(v: &Value, sep: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            a.iter().filter(|x| !x.is_null()).map(|x| text(x, sep)).collect::<Vec<_>>().join(sep)
        }
        other => other.to_string(),
    }
}

/// `2026-11-21T07:30:00.123+00:00` (to_jsonb) or `…Z` (the stream) -> `…000Z` UTC.
fn date_time(s: &str) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|t| t.and_utc())
    })?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The cell for a non-link field of type `kind`.
pub fn cell(kind: &str, v: &Value) -> Result<Value, CellError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = || CellError(format!("{v} does not fit a {kind} field"));
    Ok(match kind {
        "singleLineText" | "email" | "url" | "phoneNumber" | "singleSelect" => json!(text(v, ", ")),
        "multilineText" => json!(text(v, "\n")),
        "number" => match v {
            Value::Number(_) => v.clone(),
            Value::String(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(bad)?,
            _ => return Err(bad()),
        },
        "checkbox" => match v {
            Value::Bool(_) => v.clone(),
            _ => return Err(bad()),
        },
        "date" => {
            let s = v.as_str().ok_or_else(bad)?;
            let d = NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
                .map_err(|_| bad())?;
            json!(d.format("%Y-%m-%d").to_string())
        }
        "dateTime" => json!(date_time(v.as_str().ok_or_else(bad)?).ok_or_else(bad)?),
        "multipleSelects" => match v {
            Value::Array(a) => {
                json!(a.iter().filter(|x| !x.is_null()).map(|x| text(x, ", ")).collect::<Vec<_>>())
            }
            _ => json!([text(v, ", ")]),
        },
        _ => return Err(CellError(format!("unsupported field type {kind}"))),
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
        assert_eq!(cell("singleLineText", &json!("x")).expect("ok"), json!("x"));
        assert_eq!(cell("multilineText", &json!(["a", "b"])).expect("ok"), json!("a\nb"));
        assert_eq!(cell("number", &json!("12.5")).expect("ok"), json!(12.5));
        assert_eq!(cell("date", &json!("2026-11-21")).expect("ok"), json!("2026-11-21"));
        assert_eq!(
            cell("dateTime", &json!("2026-11-21T09:30:00.5+02:00")).expect("ok"),
            json!("2026-11-21T07:30:00.500Z")
        );
        assert_eq!(
            cell("dateTime", &json!("2026-11-21T07:30:00.000Z")).expect("ok"),
            json!("2026-11-21T07:30:00.000Z")
        );
        assert_eq!(cell("checkbox", &json!(true)).expect("ok"), json!(true));
        assert_eq!(cell("singleSelect", &json!("habit")).expect("ok"), json!("habit"));
        assert_eq!(cell("email", &Value::Null).expect("ok"), Value::Null);
        assert!(cell("checkbox", &json!("yes")).is_err());
        assert!(cell("date", &json!("soon")).is_err());
        assert_eq!(link_ids(&json!(["00000000-0000-4000-8000-000000000001"])).len(), 1);
        assert_eq!(link_ids(&json!("00000000-0000-4000-8000-000000000001")).len(), 1);
    }
}
