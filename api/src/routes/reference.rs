//! Reference data (owned by Airtable, read-only here).

use crate::{
    auth::AuthUser,
    data::reference::{self as db, Company, Goal, Method, Overtuiging},
    error::{ApiError, ErrorBody},
    extract::{ApiPath, ApiQuery},
    AppState,
};
use axum::{extract::State, Json};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MethodFilter {
    /// `method` or `habit`.
    pub kind: Option<String>,
}

/// Methods (the old /api/methods/habits is `?kind=habit`).
#[utoipa::path(get, path = "/api/methods", tag = "reference", security(("bearer" = [])), params(MethodFilter),
    responses((status = 200, body = Vec<Method>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn methods(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(f): ApiQuery<MethodFilter>,
) -> Result<Json<Vec<Method>>, ApiError> {
    if f.kind.as_deref().is_some_and(|k| k != "method" && k != "habit") {
        return Err(ApiError::invalid("kind", "must be method or habit"));
    }
    Ok(Json(db::methods(&state.pool, f.kind.as_deref()).await?))
}

/// One method.
#[utoipa::path(get, path = "/api/methods/{id}", tag = "reference", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = Method), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn method(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Method>, ApiError> {
    db::method(&state.pool, id).await?.map(Json).ok_or(ApiError::NotFound)
}

/// Goals.
#[utoipa::path(get, path = "/api/goals", tag = "reference", security(("bearer" = [])),
    responses((status = 200, body = Vec<Goal>), (status = 401, body = ErrorBody)))]
pub async fn goals(
    State(state): State<AppState>,
    _user: AuthUser,
) -> Result<Json<Vec<Goal>>, ApiError> {
    Ok(Json(db::goals(&state.pool).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GoalFilter {
    /// Comma-separated goal ids: only overtuigingen linked to any of them.
    pub goal_ids: Option<String>,
}

/// Overtuigingen, optionally by goals.
#[utoipa::path(get, path = "/api/overtuigingen", tag = "reference", security(("bearer" = [])), params(GoalFilter),
    responses((status = 200, body = Vec<Overtuiging>), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn overtuigingen(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(f): ApiQuery<GoalFilter>,
) -> Result<Json<Vec<Overtuiging>>, ApiError> {
    let goals: Vec<Uuid> = match f.goal_ids.as_deref().filter(|s| !s.trim().is_empty()) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|g| {
                g.trim()
                    .parse::<Uuid>()
                    .map_err(|_| ApiError::invalid("goal_ids", "must be comma-separated uuids"))
            })
            .collect::<Result<_, _>>()?,
    };
    if goals.len() > 100 {
        return Err(ApiError::invalid("goal_ids", "at most 100 goals"));
    }
    Ok(Json(db::overtuigingen(&state.pool, &goals).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompanyCode {
    /// The code a user types at sign-up.
    pub code: String,
}

/// Find a company by its code (public: used before signing in).
#[utoipa::path(get, path = "/api/companies/lookup", tag = "reference", params(CompanyCode),
    responses((status = 200, body = Company), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn company_lookup(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CompanyCode>,
) -> Result<Json<Company>, ApiError> {
    if q.code.trim().is_empty() || q.code.len() > 64 {
        return Err(ApiError::invalid("code", "must be 1 to 64 characters"));
    }
    db::company_by_code(&state.pool, q.code.trim()).await?.map(Json).ok_or(ApiError::NotFound)
}
