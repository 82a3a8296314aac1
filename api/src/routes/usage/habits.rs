use super::DateRange;
use crate::{
    auth::AuthUser,
    data::usage::{self as db, HabitUsage},
    error::{ApiError, ErrorBody},
    extract::{ApiJson, ApiQuery},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The caller's ticked habits in a date range (index: user_id, date).
#[utoipa::path(get, path = "/api/habit-usage", tag = "usage", security(("bearer" = [])), params(DateRange),
    responses((status = 200, body = Vec<HabitUsage>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(range): ApiQuery<DateRange>,
) -> Result<Json<Vec<HabitUsage>>, ApiError> {
    let (from, to) = range.bounds()?;
    if let Some(rows) = match &state.pipeline {
        Some(p) => p.habits(user.id, from, to).await,
        None => None,
    } {
        return Ok(Json(rows));
    }
    Ok(Json(db::habits(&state.pool, user.id, from, to).await?))
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HabitDay {
    pub method_id: Uuid,
    #[serde(deserialize_with = "crate::bounds::date")]
    pub date: NaiveDate,
}

/// Tick a habit off for a day (again: no change, 200).
#[utoipa::path(post, path = "/api/habit-usage", tag = "usage", security(("bearer" = [])), request_body = HabitDay,
    responses((status = 201, body = HabitUsage), (status = 200, body = HabitUsage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(d): ApiJson<HabitDay>,
) -> Result<(StatusCode, Json<HabitUsage>), ApiError> {
    match db::tick_habit(&state.pool, user.id, d.method_id, d.date).await? {
        Some((row, true)) => Ok((StatusCode::CREATED, Json(row))),
        Some((row, false)) => Ok((StatusCode::OK, Json(row))),
        None => Err(ApiError::invalid("method_id", "is not a habit")),
    }
}

/// Untick a habit for a day.
#[utoipa::path(delete, path = "/api/habit-usage", tag = "usage", security(("bearer" = [])), params(HabitDay),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(d): ApiQuery<HabitDay>,
) -> Result<StatusCode, ApiError> {
    if db::untick_habit(&state.pool, user.id, d.method_id, d.date).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
