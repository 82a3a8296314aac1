use super::check_text;
use crate::{
    auth::AuthUser,
    data::usage::{self as db, MethodUsage, MethodUsageChanges, NewMethodUsage},
    error::{ApiError, ErrorBody},
    extract::{ApiJson, ApiQuery},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

/// Record a method done. With a program, the program's progress changes: the sync derives
/// that from the change itself.
#[utoipa::path(post, path = "/api/method-usage", tag = "usage", security(("bearer" = [])), request_body = NewMethodUsage,
    responses((status = 201, body = MethodUsage), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(u): ApiJson<NewMethodUsage>,
) -> Result<(StatusCode, Json<MethodUsage>), ApiError> {
    check_text("remark", u.remark.as_deref(), 2000)?;
    let row = db::insert_method_usage(&state.pool, user.id, &u).await?.ok_or(ApiError::NotFound)?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Change a recorded method's day or remark.
#[utoipa::path(patch, path = "/api/method-usage", tag = "usage", security(("bearer" = [])), request_body = MethodUsageChanges,
    responses((status = 200, body = MethodUsage), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(c): ApiJson<MethodUsageChanges>,
) -> Result<Json<MethodUsage>, ApiError> {
    check_text("remark", c.remark.as_deref(), 2000)?;
    let row = db::update_method_usage(&state.pool, user.id, &c).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(row))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ByProgram {
    pub program_id: Uuid,
}

/// The latest usage of each method of one of the caller's programs.
#[utoipa::path(get, path = "/api/method-usage/by-program", tag = "usage", security(("bearer" = [])), params(ByProgram),
    responses((status = 200, body = Vec<MethodUsage>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn by_program(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ByProgram>,
) -> Result<Json<Vec<MethodUsage>>, ApiError> {
    Ok(Json(db::latest_by_program(&state.pool, user.id, q.program_id).await?))
}
