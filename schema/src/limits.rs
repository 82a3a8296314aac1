//! What both Postgres and Airtable hold, so the API never accepts a value the sync cannot
//! carry (a value written past these by hand is dead-lettered, row by row, by the daemon).

use chrono::NaiveDate;

/// Airtable's text fields hold at most this many characters (long text's limit).
pub const MAX_TEXT_CHARS: usize = 100_000;

/// The dates the API accepts: well inside both Postgres's range and Airtable's ISO dates
/// with four-digit years.
pub const FIRST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => panic!("valid"),
};
pub const LAST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2999, 12, 31) {
    Some(d) => d,
    None => panic!("valid"),
};

/// Whether the API accepts `d`.
pub fn date_in_range(d: NaiveDate) -> bool {
    (FIRST_DATE..=LAST_DATE).contains(&d)
}
