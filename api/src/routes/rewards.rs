use crate::{
    auth::AuthUser,
    data::rewards::{self as db, Rewards},
    error::{ApiError, ErrorBody},
    AppState,
};
use axum::{extract::State, Json};

/// The caller's points, level, badges and streaks (computed in SQL).
#[utoipa::path(get, path = "/api/rewards", tag = "rewards", security(("bearer" = [])),
    responses((status = 200, body = Rewards), (status = 401, body = ErrorBody)))]
pub async fn rewards(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Rewards>, ApiError> {
    db::rewards(&state.pool, user.id)
        .await?
        .map(Json)
        .ok_or(ApiError::Unauthenticated("the user no longer exists"))
}
