use super::{check_text, DateRange};
use crate::{
    auth::AuthUser,
    data::usage::{
        self as db, NewPersonalGoal, PersonalGoal, PersonalGoalChanges, PersonalGoalUsage,
    },
    error::{ApiError, ErrorBody},
    extract::{ApiJson, ApiPath, ApiQuery},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The caller's personal goals (with a coach's feedback from Airtable).
#[utoipa::path(get, path = "/api/personal-goals", tag = "personal goals", security(("bearer" = [])),
    responses((status = 200, body = Vec<PersonalGoal>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<PersonalGoal>>, ApiError> {
    Ok(Json(db::goals(&state.pool, user.id).await?))
}

/// Add a personal goal.
#[utoipa::path(post, path = "/api/personal-goals", tag = "personal goals", security(("bearer" = [])), request_body = NewPersonalGoal,
    responses((status = 201, body = PersonalGoal), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(g): ApiJson<NewPersonalGoal>,
) -> Result<(StatusCode, Json<PersonalGoal>), ApiError> {
    check_text("name", Some(&g.name), 200)?;
    check_text("description", g.description.as_deref(), 2000)?;
    Ok((StatusCode::CREATED, Json(db::insert_goal(&state.pool, user.id, &g).await?)))
}

/// Change or archive a personal goal.
#[utoipa::path(patch, path = "/api/personal-goals/{id}", tag = "personal goals", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = PersonalGoalChanges,
    responses((status = 200, body = PersonalGoal), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(c): ApiJson<PersonalGoalChanges>,
) -> Result<Json<PersonalGoal>, ApiError> {
    check_text("name", c.name.as_deref(), 200)?;
    check_text("description", c.description.as_deref(), 2000)?;
    db::update_goal(&state.pool, user.id, id, &c).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Delete a personal goal and its usage.
#[utoipa::path(delete, path = "/api/personal-goals/{id}", tag = "personal goals", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    if db::delete_goal(&state.pool, user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Days the caller worked on personal goals.
#[utoipa::path(get, path = "/api/personal-goal-usage", tag = "personal goals", security(("bearer" = [])), params(DateRange),
    responses((status = 200, body = Vec<PersonalGoalUsage>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_usage(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(range): ApiQuery<DateRange>,
) -> Result<Json<Vec<PersonalGoalUsage>>, ApiError> {
    let (from, to) = range.bounds()?;
    Ok(Json(db::goal_usage(&state.pool, user.id, from, to).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoalDay {
    pub personal_goal_id: Uuid,
    #[serde(deserialize_with = "crate::bounds::date")]
    pub date: NaiveDate,
}

/// Mark a personal goal done on a day (idempotent).
#[utoipa::path(post, path = "/api/personal-goal-usage", tag = "personal goals", security(("bearer" = [])), request_body = GoalDay,
    responses((status = 201, body = PersonalGoalUsage), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_usage(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(d): ApiJson<GoalDay>,
) -> Result<(StatusCode, Json<PersonalGoalUsage>), ApiError> {
    db::insert_goal_usage(&state.pool, user.id, d.personal_goal_id, d.date)
        .await?
        .map(|r| (StatusCode::CREATED, Json(r)))
        .ok_or(ApiError::NotFound)
}
