//! Field-level bounds on request bodies (serde `deserialize_with`): a date outside
//! `schema::limits`' range or a text longer than Airtable holds is refused while the body is
//! read, so it answers 422 `validation_failed` naming the field.

use chrono::NaiveDate;
use schema::limits::{date_in_range, FIRST_DATE, LAST_DATE, MAX_TEXT_CHARS};
use serde::{de::Error, Deserialize, Deserializer};

fn checked_date<E: Error>(d: NaiveDate) -> Result<NaiveDate, E> {
    if date_in_range(d) {
        Ok(d)
    } else {
        Err(E::custom(format!("date {d} is outside {FIRST_DATE} to {LAST_DATE}")))
    }
}

fn checked_text<E: Error>(s: String) -> Result<String, E> {
    let n = s.chars().count();
    if n > MAX_TEXT_CHARS {
        Err(E::custom(format!("text of {n} characters is longer than {MAX_TEXT_CHARS}")))
    } else {
        Ok(s)
    }
}

pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    checked_date(NaiveDate::deserialize(d)?)
}

pub fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Option::<NaiveDate>::deserialize(d)?.map(checked_date).transpose()
}

pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked_text(String::deserialize(d)?)
}

pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)?.map(checked_text).transpose()
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::date")]
        date: chrono::NaiveDate,
        #[serde(default, deserialize_with = "super::opt_text")]
        note: Option<String>,
    }

    fn parse(v: serde_json::Value) -> Result<Body, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn dates_outside_the_range_and_overlong_text_are_refused() {
        for bad in ["+10000-01-01", "-0044-03-15", "1899-12-31", "3000-01-01"] {
            let e = parse(serde_json::json!({ "date": bad })).expect_err(bad);
            assert!(e.contains("outside 1900-01-01 to 2999-12-31"), "{bad}: {e}");
        }
        for ok in ["1900-01-01", "2026-12-02", "2999-12-31"] {
            assert!(parse(serde_json::json!({ "date": ok })).is_ok(), "{ok}");
        }
        let long = "é".repeat(schema::limits::MAX_TEXT_CHARS + 1);
        assert!(parse(serde_json::json!({ "date": "2026-01-01", "note": long }))
            .is_err_and(|e| e.contains("longer than")));
        let b = parse(serde_json::json!({ "date": "2026-01-01" })).expect("absent text");
        assert_eq!((b.date.to_string(), b.note), ("2026-01-01".to_owned(), None));
    }
}
