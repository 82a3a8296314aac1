use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

/// A program with its progress, computed in SQL (view program_progress).
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Program {
    pub id: Uuid,
    pub name: Option<String>,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub goal_ids: Vec<Uuid>,
    pub method_ids: Vec<Uuid>,
    pub day_of_week_ids: Vec<Uuid>,
    pub motivation: Option<String>,
    pub planned_sessions: i32,
    pub completed_sessions: i32,
    pub percent_complete: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PROGRAM: &str = "SELECT p.id, p.name, p.start_date, p.end_date, p.goal_ids, p.method_ids, p.day_of_week_ids, p.motivation,
        pp.planned_sessions, pp.completed_sessions, pp.percent_complete, p.created_at, p.updated_at
    FROM programs p JOIN program_progress pp ON pp.program_id = p.id";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProgram {
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub name: Option<String>,
    #[serde(deserialize_with = "crate::bounds::date")]
    pub start_date: NaiveDate,
    #[serde(deserialize_with = "crate::bounds::date")]
    pub end_date: NaiveDate,
    #[serde(default)]
    pub goal_ids: Vec<Uuid>,
    #[serde(default)]
    pub method_ids: Vec<Uuid>,
    #[serde(default)]
    pub day_of_week_ids: Vec<Uuid>,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub motivation: Option<String>,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramChanges {
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::bounds::opt_date")]
    pub start_date: Option<NaiveDate>,
    #[serde(default, deserialize_with = "crate::bounds::opt_date")]
    pub end_date: Option<NaiveDate>,
    pub goal_ids: Option<Vec<Uuid>>,
    pub method_ids: Option<Vec<Uuid>>,
    pub day_of_week_ids: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub motivation: Option<String>,
}

/// The caller's programs, newest first ($1: the caller).
pub fn list_sql() -> String {
    format!("{PROGRAM} WHERE p.user_id = $1 ORDER BY p.start_date DESC")
}

pub async fn list(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Vec<Program>> {
    sqlx::query_as(&list_sql()).bind(user).fetch_all(db).await
}

pub async fn get(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<Option<Program>> {
    sqlx::query_as(&format!("{PROGRAM} WHERE p.user_id = $1 AND p.id = $2"))
        .bind(user)
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn insert(db: impl PgExecutor<'_>, user: Uuid, p: &NewProgram) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "INSERT INTO programs (user_id, name, start_date, end_date, goal_ids, method_ids, day_of_week_ids, motivation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(user)
    .bind(&p.name)
    .bind(p.start_date)
    .bind(p.end_date)
    .bind(&p.goal_ids)
    .bind(&p.method_ids)
    .bind(&p.day_of_week_ids)
    .bind(&p.motivation)
    .fetch_one(db)
    .await
}

/// Applies `c` to the caller's program; false when there is no such program of theirs.
pub async fn update(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    c: &ProgramChanges,
) -> sqlx::Result<bool> {
    let n = sqlx::query(
        "UPDATE programs SET name = COALESCE($3, name), start_date = COALESCE($4, start_date), end_date = COALESCE($5, end_date),
                goal_ids = COALESCE($6, goal_ids), method_ids = COALESCE($7, method_ids),
                day_of_week_ids = COALESCE($8, day_of_week_ids), motivation = COALESCE($9, motivation)
         WHERE user_id = $1 AND id = $2",
    )
    .bind(user)
    .bind(id)
    .bind(&c.name)
    .bind(c.start_date)
    .bind(c.end_date)
    .bind(&c.goal_ids)
    .bind(&c.method_ids)
    .bind(&c.day_of_week_ids)
    .bind(&c.motivation)
    .execute(db)
    .await?;
    Ok(n.rows_affected() == 1)
}

pub async fn delete(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    Ok(sqlx::query("DELETE FROM programs WHERE user_id = $1 AND id = $2")
        .bind(user)
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// One day of a program's planning.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Planning {
    pub id: Uuid,
    pub program_id: Uuid,
    pub date: NaiveDate,
    pub day_of_week_id: Option<Uuid>,
    pub method_ids: Vec<Uuid>,
    pub notes: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanningChanges {
    pub method_ids: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "crate::bounds::opt_text")]
    pub notes: Option<String>,
}

pub async fn planning(
    db: impl PgExecutor<'_>,
    user: Uuid,
    program: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Planning>> {
    sqlx::query_as("SELECT id, program_id, date, day_of_week_id, method_ids, notes, updated_at FROM program_schedule WHERE user_id = $1 AND program_id = $2 AND id = $3")
        .bind(user)
        .bind(program)
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn update_planning(
    db: impl PgExecutor<'_>,
    user: Uuid,
    program: Uuid,
    id: Uuid,
    c: &PlanningChanges,
) -> sqlx::Result<Option<Planning>> {
    sqlx::query_as(
        "UPDATE program_schedule SET method_ids = COALESCE($4, method_ids), notes = COALESCE($5, notes)
         WHERE user_id = $1 AND program_id = $2 AND id = $3
         RETURNING id, program_id, date, day_of_week_id, method_ids, notes, updated_at",
    )
    .bind(user)
    .bind(program)
    .bind(id)
    .bind(&c.method_ids)
    .bind(&c.notes)
    .fetch_optional(db)
    .await
}
