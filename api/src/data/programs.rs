use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

/// A program with its progress, computed in SQL (view programs_with_progress: one pass).
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
        p.planned_sessions, p.completed_sessions, p.percent_complete, p.created_at, p.updated_at
    FROM programs_with_progress p";

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

/// Applies `c` to the caller's program; its methods before the change, or None when there
/// is no such program of theirs.
pub async fn update(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    c: &ProgramChanges,
) -> sqlx::Result<Option<Vec<Uuid>>> {
    // `old` reads the row as it was before this statement.
    sqlx::query_scalar(
        "UPDATE programs p SET name = COALESCE($3, p.name), start_date = COALESCE($4, p.start_date), end_date = COALESCE($5, p.end_date),
                goal_ids = COALESCE($6, p.goal_ids), method_ids = COALESCE($7, p.method_ids),
                day_of_week_ids = COALESCE($8, p.day_of_week_ids), motivation = COALESCE($9, p.motivation)
         FROM programs old
         WHERE old.id = p.id AND p.user_id = $1 AND p.id = $2
         RETURNING old.method_ids",
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
    .fetch_optional(db)
    .await
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

/// The planning a program's dates and weekdays imply: one row per selected weekday between
/// start and end, carrying the program's methods. Generated with the program (from its
/// start) and again after a change of its dates, weekdays or methods (from today: the past
/// stays as it was). A row with usage is never touched; a row without usage outside the
/// new plan is removed; a planned row whose methods were the program's old ones gets the
/// new ones (a day the user edited keeps its own). One statement: $1 the caller, $2 the
/// program, $3 the first date regenerated (NULL: today), $4 the methods before the change.
const REPLAN: &str = "WITH p AS (
        SELECT id, user_id, start_date, end_date, method_ids, day_of_week_ids,
               coalesce($3::date, current_date) AS first
        FROM programs WHERE user_id = $1 AND id = $2),
    wanted AS (
        SELECT p.id AS program_id, p.user_id, d::date AS date, dw.id AS day_of_week_id, p.method_ids
        FROM p CROSS JOIN generate_series(greatest(p.start_date, p.first), p.end_date, interval '1 day') d
        JOIN days_of_week dw ON dw.iso_day = extract(isodow FROM d) AND dw.deleted_at IS NULL
        WHERE dw.id = ANY (p.day_of_week_ids)),
    open AS (
        SELECT ps.id, ps.date, ps.method_ids FROM program_schedule ps, p
        WHERE ps.user_id = $1 AND ps.program_id = $2 AND ps.date >= p.first
          AND NOT EXISTS (SELECT 1 FROM method_usage mu WHERE mu.program_schedule_id = ps.id)),
    dropped AS (
        DELETE FROM program_schedule ps USING open o
        WHERE ps.id = o.id AND o.date NOT IN (SELECT date FROM wanted)
        RETURNING ps.id),
    moved AS (
        UPDATE program_schedule ps SET method_ids = w.method_ids
        FROM open o JOIN wanted w ON w.date = o.date
        WHERE ps.id = o.id AND o.method_ids = $4 AND o.method_ids <> w.method_ids
        RETURNING ps.id)
    INSERT INTO program_schedule (program_id, user_id, date, day_of_week_id, method_ids)
    SELECT program_id, user_id, date, day_of_week_id, method_ids FROM wanted
    ON CONFLICT (program_id, date) DO NOTHING";

/// From which day a program's planning is generated again.
#[derive(Debug, Clone, Copy)]
pub enum Replan {
    /// A new program: every day from its start.
    FromStart,
    /// A changed program: from today (the database's date) on.
    FromToday,
}

/// Brings the caller's program's planning in line with its dates, weekdays and methods
/// (`old_methods`: the program's methods before the change). See [`REPLAN`].
pub async fn replan(
    db: impl PgExecutor<'_>,
    user: Uuid,
    id: Uuid,
    since: Replan,
    old_methods: &[Uuid],
) -> sqlx::Result<()> {
    let first = match since {
        Replan::FromStart => Some(schema::limits::FIRST_DATE),
        Replan::FromToday => None,
    };
    sqlx::query(REPLAN)
        .bind(user)
        .bind(id)
        .bind(first)
        .bind(old_methods)
        .execute(db)
        .await
        .map(|_| ())
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

const PLANNING: &str =
    "SELECT id, program_id, date, day_of_week_id, method_ids, notes, updated_at FROM program_schedule";

/// The caller's program's planning, by date; empty when the program has none (or is not
/// theirs: the caller tells the two apart).
pub async fn schedule(
    db: impl PgExecutor<'_>,
    user: Uuid,
    program: Uuid,
) -> sqlx::Result<Vec<Planning>> {
    sqlx::query_as(&format!("{PLANNING} WHERE user_id = $1 AND program_id = $2 ORDER BY date"))
        .bind(user)
        .bind(program)
        .fetch_all(db)
        .await
}

pub async fn exists(db: impl PgExecutor<'_>, user: Uuid, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM programs WHERE user_id = $1 AND id = $2)")
        .bind(user)
        .bind(id)
        .fetch_one(db)
        .await
}

pub async fn planning(
    db: impl PgExecutor<'_>,
    user: Uuid,
    program: Uuid,
    id: Uuid,
) -> sqlx::Result<Option<Planning>> {
    sqlx::query_as(&format!("{PLANNING} WHERE user_id = $1 AND program_id = $2 AND id = $3"))
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
