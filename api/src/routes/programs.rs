//! Programs, their planning and methods. Another user's program answers 404.

use crate::{
    auth::AuthUser,
    data::{
        programs::{
            self as db, NewProgram, Planning, PlanningChanges, Program, ProgramChanges, Replan,
        },
        reference::Method,
    },
    error::{ApiError, ErrorBody},
    extract::{ApiJson, ApiPath},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use schema::postgres::DbError;
use uuid::Uuid;

fn check_dates(
    start: Option<chrono::NaiveDate>,
    end: Option<chrono::NaiveDate>,
) -> Result<(), ApiError> {
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(ApiError::invalid("end_date", "must not be before start_date"));
        }
        if (e - s).num_days() > 366 * 2 {
            return Err(ApiError::invalid("end_date", "a program lasts at most two years"));
        }
    }
    Ok(())
}

fn check_text(field: &str, v: Option<&String>, max: usize) -> Result<(), ApiError> {
    if v.is_some_and(|s| s.chars().count() > max) {
        return Err(ApiError::invalid(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

/// The caller's programs, newest first, each with its progress.
#[utoipa::path(get, path = "/api/programs", tag = "programs", security(("bearer" = [])),
    responses((status = 200, body = Vec<Program>), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<Program>>, ApiError> {
    if let Some(rows) = match &state.pipeline {
        Some(p) => p.programs(user.id).await,
        None => None,
    } {
        return Ok(Json(rows));
    }
    Ok(Json(db::list(&state.pool, user.id).await?))
}

/// Start a program, with its planning: one day per selected weekday between start and end,
/// carrying the program's methods. Programs of one user never overlap in dates (409).
#[utoipa::path(post, path = "/api/programs", tag = "programs", security(("bearer" = [])), request_body = NewProgram,
    responses((status = 201, body = Program), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(p): ApiJson<NewProgram>,
) -> Result<(StatusCode, Json<Program>), ApiError> {
    check_dates(Some(p.start_date), Some(p.end_date))?;
    check_text("name", p.name.as_ref(), 200)?;
    check_text("motivation", p.motivation.as_ref(), 5000)?;
    let mut tx = state.pool.begin().await.map_err(DbError::from)?;
    let id = db::insert(&mut *tx, user.id, &p).await?;
    db::replan(&mut *tx, user.id, id, Replan::FromStart, &[]).await?;
    let program = db::get(&mut *tx, user.id, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok((StatusCode::CREATED, Json(program)))
}

/// One program with its progress.
#[utoipa::path(get, path = "/api/programs/{id}", tag = "programs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Program), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Program>, ApiError> {
    db::get(&state.pool, user.id, id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Change a program. New dates, weekdays or methods plan the days from today on again; days
/// with usage, and days before today, stay as they are.
#[utoipa::path(patch, path = "/api/programs/{id}", tag = "programs", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = ProgramChanges,
    responses((status = 200, body = Program), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(c): ApiJson<ProgramChanges>,
) -> Result<Json<Program>, ApiError> {
    check_dates(c.start_date, c.end_date)?;
    check_text("name", c.name.as_ref(), 200)?;
    check_text("motivation", c.motivation.as_ref(), 5000)?;
    let mut tx = state.pool.begin().await.map_err(DbError::from)?;
    let old_methods = db::update(&mut *tx, user.id, id, &c).await?.ok_or(ApiError::NotFound)?;
    let replans = c.start_date.is_some()
        || c.end_date.is_some()
        || c.day_of_week_ids.is_some()
        || c.method_ids.is_some();
    if replans {
        db::replan(&mut *tx, user.id, id, Replan::FromToday, &old_methods).await?;
    }
    let program = db::get(&mut *tx, user.id, id).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Json(program))
}

/// Delete a program with its planning and usage.
#[utoipa::path(delete, path = "/api/programs/{id}", tag = "programs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    if db::delete(&state.pool, user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A program's planning, by date.
#[utoipa::path(get, path = "/api/programs/{id}/schedule", tag = "programs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<Planning>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn schedule(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<Planning>>, ApiError> {
    let days = db::schedule(&state.pool, user.id, id).await?;
    // Only an empty answer needs telling "no planning" from "not yours".
    if days.is_empty() && !db::exists(&state.pool, user.id, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(days))
}

/// One day of a program's planning.
#[utoipa::path(get, path = "/api/programs/{id}/schedule/{planning_id}", tag = "programs", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("planning_id" = Uuid, Path)),
    responses((status = 200, body = Planning), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_planning(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, planning)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Planning>, ApiError> {
    db::planning(&state.pool, user.id, id, planning).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Change a day's planned methods or notes; the program's progress follows.
#[utoipa::path(patch, path = "/api/programs/{id}/schedule/{planning_id}", tag = "programs", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("planning_id" = Uuid, Path)), request_body = PlanningChanges,
    responses((status = 200, body = Planning), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_planning(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath((id, planning)): ApiPath<(Uuid, Uuid)>,
    ApiJson(c): ApiJson<PlanningChanges>,
) -> Result<Json<Planning>, ApiError> {
    check_text("notes", c.notes.as_ref(), 5000)?;
    let p = db::update_planning(&state.pool, user.id, id, planning, &c)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(p))
}

/// The methods of a program.
#[utoipa::path(get, path = "/api/programs/{id}/methods", tag = "programs", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<Method>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn methods(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Vec<Method>>, ApiError> {
    crate::data::reference::program_methods(&state.pool, user.id, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}
