//! Usage endpoints: habits, methods, personal goals, overtuigingen.

pub mod beliefs;
pub mod goals;
pub mod habits;
pub mod methods;

use crate::error::ApiError;
use chrono::{NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

/// A date range; by default the last 30 days. At most 366 days.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DateRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl DateRange {
    pub fn bounds(&self) -> Result<(NaiveDate, NaiveDate), ApiError> {
        let to = self.to.unwrap_or_else(|| Utc::now().date_naive());
        let from = match self.from {
            Some(f) => f,
            None => to
                .checked_sub_signed(chrono::Duration::days(30))
                .ok_or_else(|| ApiError::invalid("to", "is out of range"))?,
        };
        if from > to {
            return Err(ApiError::invalid("from", "must not be after to"));
        }
        if (to - from).num_days() > 366 {
            return Err(ApiError::invalid("to", "a range spans at most 366 days"));
        }
        Ok((from, to))
    }
}

pub fn check_text(field: &str, v: Option<&str>, max: usize) -> Result<(), ApiError> {
    match v {
        Some(s) if s.trim().is_empty() => Err(ApiError::invalid(field, "must not be empty")),
        Some(s) if s.chars().count() > max => {
            Err(ApiError::invalid(field, format!("must be at most {max} characters")))
        }
        _ => Ok(()),
    }
}
