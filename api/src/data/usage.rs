//! Usage: habits, methods, personal goals, overtuigingen. All scoped to the caller; every
//! insert is an INSERT … SELECT that only finds the caller's own parent rows.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct HabitUsage {
    pub id: Uuid,
    pub method_id: Uuid,
    pub date: NaiveDate,
}

/// The caller's habit days in a range ($1 caller, $2..$3 the dates).
pub const HABITS: &str = "SELECT id, method_id, date FROM habit_usage WHERE user_id = $1 AND date BETWEEN $2 AND $3 ORDER BY date, method_id";

pub async fn habits(
    db: impl PgExecutor<'_>,
    user: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<HabitUsage>> {
    sqlx::query_as(HABITS).bind(user).bind(from).bind(to).fetch_all(db).await
}

/// Ticks a habit off (idempotent): the new or existing row; None when `method` is no habit.
pub async fn tick_habit(
    db: impl PgExecutor<'_>,
    user: Uuid,
    method: Uuid,
    date: NaiveDate,
) -> sqlx::Result<Option<(HabitUsage, bool)>> {
    let row: Option<(Uuid, Uuid, NaiveDate, bool)> = sqlx::query_as(
        "WITH ins AS (
             INSERT INTO habit_usage (user_id, method_id, date)
             SELECT $1, m.id, $3 FROM methods m WHERE m.id = $2 AND m.kind = 'habit' AND m.deleted_at IS NULL
             ON CONFLICT (user_id, method_id, date) DO NOTHING
             RETURNING id, method_id, date)
         SELECT id, method_id, date, true FROM ins
         UNION ALL
         SELECT id, method_id, date, false FROM habit_usage WHERE user_id = $1 AND method_id = $2 AND date = $3 AND NOT EXISTS (SELECT 1 FROM ins)",
    )
    .bind(user)
    .bind(method)
    .bind(date)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(id, method_id, date, created)| (HabitUsage { id, method_id, date }, created)))
}

pub async fn untick_habit(
    db: impl PgExecutor<'_>,
    user: Uuid,
    method: Uuid,
    date: NaiveDate,
) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM habit_usage WHERE user_id = $1 AND method_id = $2 AND date = $3")
        .bind(user)
        .bind(method)
        .bind(date)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct MethodUsage {
    pub id: Uuid,
    pub method_id: Uuid,
    pub program_id: Option<Uuid>,
    pub program_schedule_id: Option<Uuid>,
    pub used_on: NaiveDate,
    pub remark: Option<String>,
    pub created_at: DateTime<Utc>,
}

const METHOD_USAGE: &str =
    "id, method_id, program_id, program_schedule_id, used_on, remark, created_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMethodUsage {
    pub method_id: Uuid,
    pub program_id: Option<Uuid>,
    pub program_schedule_id: Option<Uuid>,
    #[serde(deserialize_with = "crate::bounds::date")]
    pub used_on: NaiveDate,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub remark: Option<String>,
}

/// Records a method done; None when the program or planning day is not the caller's.
pub async fn insert_method_usage(
    db: impl PgExecutor<'_>,
    user: Uuid,
    u: &NewMethodUsage,
) -> sqlx::Result<Option<MethodUsage>> {
    sqlx::query_as(&format!(
        "INSERT INTO method_usage (user_id, method_id, program_id, program_schedule_id, used_on, remark)
         SELECT $1, $2, $3, $4, $5, $6
         WHERE ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM programs WHERE id = $3 AND user_id = $1))
           AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM program_schedule WHERE id = $4 AND user_id = $1 AND ($3::uuid IS NULL OR program_id = $3)))
         RETURNING {METHOD_USAGE}"
    ))
    .bind(user)
    .bind(u.method_id)
    .bind(u.program_id)
    .bind(u.program_schedule_id)
    .bind(u.used_on)
    .bind(&u.remark)
    .fetch_optional(db)
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MethodUsageChanges {
    pub id: Uuid,
    #[serde(default, deserialize_with = "crate::bounds::opt_date")]
    pub used_on: Option<NaiveDate>,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub remark: Option<String>,
}

pub async fn update_method_usage(
    db: impl PgExecutor<'_>,
    user: Uuid,
    c: &MethodUsageChanges,
) -> sqlx::Result<Option<MethodUsage>> {
    sqlx::query_as(&format!("UPDATE method_usage SET used_on = COALESCE($3, used_on), remark = COALESCE($4, remark) WHERE user_id = $1 AND id = $2 RETURNING {METHOD_USAGE}"))
        .bind(user)
        .bind(c.id)
        .bind(c.used_on)
        .bind(&c.remark)
        .fetch_optional(db)
        .await
}

/// The latest usage of each method of a program (index: program_id, method_id, used_on).
pub async fn latest_by_program(
    db: impl PgExecutor<'_>,
    user: Uuid,
    program: Uuid,
) -> sqlx::Result<Vec<MethodUsage>> {
    sqlx::query_as(&format!(
        "SELECT DISTINCT ON (method_id) {METHOD_USAGE} FROM method_usage
         WHERE user_id = $1 AND program_id = $2 ORDER BY method_id, used_on DESC, created_at DESC"
    ))
    .bind(user)
    .bind(program)
    .fetch_all(db)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PersonalGoal {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub scheduled_day_ids: Vec<Uuid>,
    pub archived_at: Option<DateTime<Utc>>,
    /// Written by a coach in Airtable.
    pub coach_feedback: Option<String>,
    pub created_at: DateTime<Utc>,
}

const GOAL: &str =
    "id, name, description, scheduled_day_ids, archived_at, coach_feedback, created_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPersonalGoal {
    #[serde(deserialize_with = "crate::bounds::text")]
    pub name: String,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub description: Option<String>,
    #[serde(default)]
    pub scheduled_day_ids: Vec<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalGoalChanges {
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub description: Option<String>,
    pub scheduled_day_ids: Option<Vec<Uuid>>,
    /// true archives the goal, false brings it back.
    pub archived: Option<bool>,
}

pub async fn goals(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<PersonalGoal>> {
    sqlx::query_as(&format!(
        "SELECT {GOAL} FROM personal_goals WHERE user_id = $1 ORDER BY created_at"
    ))
    .bind(user)
    .fetch_all(db)
    .await
}

pub async fn insert_goal(
    db: impl PgExecutor<'_>,
    user: Uuid,
    g: &NewPersonalGoal,
) -> sqlx::Result<PersonalGoal> {
    sqlx::query_as(&format!("INSERT INTO personal_goals (user_id, name, description, scheduled_day_ids) VALUES ($1, $2, $3, $4) RETURNING {GOAL}"))
        .bind(user)
        .bind(&g.name)
        .bind(&g.description)
        .bind(&g.scheduled_day_ids)
        .fetch_one(db)
        .await
}

pub async fn update_goal(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    c: &PersonalGoalChanges,
) -> sqlx::Result<Option<PersonalGoal>> {
    sqlx::query_as(&format!(
        "UPDATE personal_goals SET name = COALESCE($3, name), description = COALESCE($4, description),
                scheduled_day_ids = COALESCE($5, scheduled_day_ids),
                archived_at = CASE WHEN $6::boolean IS NULL THEN archived_at WHEN $6 THEN COALESCE(archived_at, now()) ELSE NULL END
         WHERE user_id = $1 AND id = $2 RETURNING {GOAL}"
    ))
    .bind(user)
    .bind(id)
    .bind(&c.name)
    .bind(&c.description)
    .bind(&c.scheduled_day_ids)
    .bind(c.archived)
    .fetch_optional(db)
    .await
}

pub async fn delete_goal(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM personal_goals WHERE user_id = $1 AND id = $2")
        .bind(user)
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PersonalGoalUsage {
    pub id: Uuid,
    pub personal_goal_id: Uuid,
    pub date: NaiveDate,
}

pub async fn goal_usage(
    db: impl PgExecutor<'_>,
    user: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<PersonalGoalUsage>> {
    sqlx::query_as("SELECT id, personal_goal_id, date FROM personal_goal_usage WHERE user_id = $1 AND date BETWEEN $2 AND $3 ORDER BY date")
        .bind(user)
        .bind(from)
        .bind(to)
        .fetch_all(db)
        .await
}

/// Marks a personal goal done on a day (idempotent); None when the goal is not the caller's.
pub async fn insert_goal_usage(
    db: impl PgExecutor<'_>,
    user: Uuid,
    goal: Uuid,
    date: NaiveDate,
) -> sqlx::Result<Option<PersonalGoalUsage>> {
    sqlx::query_as(
        "WITH ins AS (
             INSERT INTO personal_goal_usage (user_id, personal_goal_id, date)
             SELECT $1, g.id, $3 FROM personal_goals g WHERE g.id = $2 AND g.user_id = $1
             ON CONFLICT (personal_goal_id, date) DO NOTHING
             RETURNING id, personal_goal_id, date)
         SELECT * FROM ins
         UNION ALL
         SELECT id, personal_goal_id, date FROM personal_goal_usage WHERE user_id = $1 AND personal_goal_id = $2 AND date = $3 AND NOT EXISTS (SELECT 1 FROM ins)",
    )
    .bind(user)
    .bind(goal)
    .bind(date)
    .fetch_optional(db)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct OvertuigingUsage {
    pub id: Uuid,
    pub overtuiging_id: Uuid,
    pub program_id: Option<Uuid>,
    pub date: NaiveDate,
}

pub async fn overtuiging_usage(
    db: impl PgExecutor<'_>,
    user: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<OvertuigingUsage>> {
    sqlx::query_as("SELECT id, overtuiging_id, program_id, date FROM overtuiging_usage WHERE user_id = $1 AND date BETWEEN $2 AND $3 ORDER BY date")
        .bind(user)
        .bind(from)
        .bind(to)
        .fetch_all(db)
        .await
}

/// Records an overtuiging practised (idempotent per day): (row, newly recorded); None when
/// the program is not the caller's.
pub async fn insert_overtuiging_usage(
    db: impl PgExecutor<'_>,
    user: Uuid,
    overtuiging: Uuid,
    program: Option<Uuid>,
    date: NaiveDate,
) -> sqlx::Result<Option<(OvertuigingUsage, bool)>> {
    let row: Option<(Uuid, Uuid, Option<Uuid>, NaiveDate, bool)> = sqlx::query_as(
        "WITH ins AS (
             INSERT INTO overtuiging_usage (user_id, overtuiging_id, program_id, date)
             SELECT $1, $2, $3, $4 WHERE $3::uuid IS NULL OR EXISTS (SELECT 1 FROM programs WHERE id = $3 AND user_id = $1)
             ON CONFLICT (user_id, overtuiging_id, date) DO NOTHING
             RETURNING id, overtuiging_id, program_id, date)
         SELECT id, overtuiging_id, program_id, date, true FROM ins
         UNION ALL
         SELECT id, overtuiging_id, program_id, date, false FROM overtuiging_usage
         WHERE user_id = $1 AND overtuiging_id = $2 AND date = $4 AND NOT EXISTS (SELECT 1 FROM ins)",
    )
    .bind(user)
    .bind(overtuiging)
    .bind(program)
    .bind(date)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(id, overtuiging_id, program_id, date, created)| {
        (OvertuigingUsage { id, overtuiging_id, program_id, date }, created)
    }))
}

/// Consecutive days with an overtuiging practised: the current run (ending today or
/// yesterday) and the longest.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, sqlx::FromRow)]
pub struct Streak {
    pub current: i32,
    pub longest: i32,
}

pub async fn overtuiging_streak(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Streak> {
    sqlx::query_as(
        "WITH days AS (SELECT DISTINCT date FROM overtuiging_usage WHERE user_id = $1 AND date <= current_date),
              runs AS (SELECT max(date) AS last, count(*)::int AS len
                       FROM (SELECT date, date - (row_number() OVER (ORDER BY date))::int AS grp FROM days) d GROUP BY grp)
         SELECT coalesce((SELECT len FROM runs WHERE last >= current_date - 1 ORDER BY last DESC LIMIT 1), 0) AS current,
                coalesce((SELECT max(len) FROM runs), 0) AS longest",
    )
    .bind(user)
    .fetch_one(db)
    .await
}

/// Adds bonus points; returns the new total.
pub async fn award(db: impl PgExecutor<'_>, user: Uuid, points: i32) -> sqlx::Result<i32> {
    sqlx::query_scalar(
        "UPDATE users SET bonus_points = bonus_points + $2 WHERE id = $1 RETURNING bonus_points",
    )
    .bind(user)
    .bind(points)
    .fetch_one(db)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PersoonlijkeOvertuiging {
    pub id: Uuid,
    pub name: String,
    pub program_id: Option<Uuid>,
    pub completed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPersoonlijkeOvertuiging {
    #[serde(deserialize_with = "crate::bounds::text")]
    pub name: String,
    pub program_id: Option<Uuid>,
    #[serde(default)]
    pub completed: bool,
}

pub async fn own_beliefs(
    db: impl PgExecutor<'_>,
    user: Uuid,
) -> sqlx::Result<Vec<PersoonlijkeOvertuiging>> {
    sqlx::query_as("SELECT id, name, program_id, completed_at, created_at FROM persoonlijke_overtuigingen WHERE user_id = $1 ORDER BY created_at")
        .bind(user)
        .fetch_all(db)
        .await
}

/// None when the program is not the caller's.
pub async fn insert_own_belief(
    db: impl PgExecutor<'_>,
    user: Uuid,
    b: &NewPersoonlijkeOvertuiging,
) -> sqlx::Result<Option<PersoonlijkeOvertuiging>> {
    sqlx::query_as(
        "INSERT INTO persoonlijke_overtuigingen (user_id, program_id, name, completed_at)
         SELECT $1, $2, $3, CASE WHEN $4 THEN now() END
         WHERE $2::uuid IS NULL OR EXISTS (SELECT 1 FROM programs WHERE id = $2 AND user_id = $1)
         RETURNING id, name, program_id, completed_at, created_at",
    )
    .bind(user)
    .bind(b.program_id)
    .bind(&b.name)
    .bind(b.completed)
    .fetch_optional(db)
    .await
}
