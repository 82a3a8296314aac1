use super::{check_text, DateRange};
use crate::{
    auth::AuthUser,
    data::usage::{
        self as db, NewPersoonlijkeOvertuiging, OvertuigingUsage, PersoonlijkeOvertuiging, Streak,
    },
    error::{ApiError, ErrorBody},
    extract::{ApiJson, ApiQuery},
    AppState,
};
use axum::{extract::State, http::StatusCode, Json};
use chrono::NaiveDate;
use schema::postgres::DbError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Points for practising an overtuiging, and the bonus each full week of a streak earns.
const POINTS_PER_DAY: i32 = 1;
const WEEK_STREAK_BONUS: i32 = 5;

#[derive(Debug, Serialize, ToSchema)]
pub struct OvertuigingUsageList {
    pub items: Vec<OvertuigingUsage>,
    pub streak: Streak,
}

/// Overtuigingen practised in a date range, with the caller's streak (computed in SQL).
#[utoipa::path(get, path = "/api/overtuiging-usage", tag = "overtuigingen", security(("bearer" = [])), params(DateRange),
    responses((status = 200, body = OvertuigingUsageList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_usage(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(range): ApiQuery<DateRange>,
) -> Result<Json<OvertuigingUsageList>, ApiError> {
    let (from, to) = range.bounds()?;
    let items = db::overtuiging_usage(&state.pool, user.id, from, to).await?;
    let streak = db::overtuiging_streak(&state.pool, user.id).await?;
    Ok(Json(OvertuigingUsageList { items, streak }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OvertuigingDay {
    pub overtuiging_id: Uuid,
    pub program_id: Option<Uuid>,
    #[serde(deserialize_with = "crate::bounds::date")]
    pub date: NaiveDate,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Practised {
    pub usage: OvertuigingUsage,
    /// Points this request earned (0 when the day was already recorded).
    pub points_awarded: i32,
    pub bonus_points: i32,
    pub streak: Streak,
}

/// Record an overtuiging practised on a day. A new day earns a point, and every full week of
/// streak a bonus; usage, streak and points change in one transaction.
#[utoipa::path(post, path = "/api/overtuiging-usage", tag = "overtuigingen", security(("bearer" = [])), request_body = OvertuigingDay,
    responses((status = 201, body = Practised), (status = 200, body = Practised), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_usage(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(d): ApiJson<OvertuigingDay>,
) -> Result<(StatusCode, Json<Practised>), ApiError> {
    let mut tx = state.pool.begin().await.map_err(DbError::from)?;
    let (usage, created) =
        db::insert_overtuiging_usage(&mut *tx, user.id, d.overtuiging_id, d.program_id, d.date)
            .await?
            .ok_or(ApiError::NotFound)?;
    let streak = db::overtuiging_streak(&mut *tx, user.id).await?;
    let points = if created {
        POINTS_PER_DAY
            + if streak.current > 0
                && streak.current % 7 == 0
                && chrono::Utc::now()
                    .date_naive()
                    .pred_opt()
                    .is_some_and(|yesterday| d.date >= yesterday)
            {
                WEEK_STREAK_BONUS
            } else {
                0
            }
    } else {
        0
    };
    let bonus_points = db::award(&mut *tx, user.id, points).await?;
    tx.commit().await.map_err(DbError::from)?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Practised { usage, points_awarded: points, bonus_points, streak })))
}

/// The caller's own overtuigingen.
#[utoipa::path(get, path = "/api/persoonlijke-overtuigingen", tag = "overtuigingen", security(("bearer" = [])),
    responses((status = 200, body = Vec<PersoonlijkeOvertuiging>), (status = 401, body = ErrorBody)))]
pub async fn list_own(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<PersoonlijkeOvertuiging>>, ApiError> {
    Ok(Json(db::own_beliefs(&state.pool, user.id).await?))
}

/// Write down an own overtuiging.
#[utoipa::path(post, path = "/api/persoonlijke-overtuigingen", tag = "overtuigingen", security(("bearer" = [])), request_body = NewPersoonlijkeOvertuiging,
    responses((status = 201, body = PersoonlijkeOvertuiging), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_own(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(b): ApiJson<NewPersoonlijkeOvertuiging>,
) -> Result<(StatusCode, Json<PersoonlijkeOvertuiging>), ApiError> {
    check_text("name", Some(&b.name), 500)?;
    db::insert_own_belief(&state.pool, user.id, &b)
        .await?
        .map(|r| (StatusCode::CREATED, Json(r)))
        .ok_or(ApiError::NotFound)
}
