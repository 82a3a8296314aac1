//! Reference data owned by Airtable: read-only here, soft-deleted rows hidden.

use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Method {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    /// `method` or `habit`.
    pub kind: String,
    pub duration_minutes: Option<i32>,
    pub media_url: Option<String>,
    pub goal_ids: Vec<Uuid>,
    pub mindset_category_ids: Vec<Uuid>,
}

const METHOD: &str = "SELECT m.id, m.name, m.description, m.kind, m.duration_minutes, m.media_url, m.goal_ids, m.mindset_category_ids FROM methods m";

pub async fn methods(db: impl PgExecutor<'_>, kind: Option<&str>) -> sqlx::Result<Vec<Method>> {
    sqlx::query_as(&format!("{METHOD} WHERE m.deleted_at IS NULL AND m.is_active AND ($1::text IS NULL OR m.kind = $1) ORDER BY m.sort_order, m.name"))
        .bind(kind)
        .fetch_all(db)
        .await
}

pub async fn method(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<Method>> {
    sqlx::query_as(&format!("{METHOD} WHERE m.id = $1 AND m.deleted_at IS NULL"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The methods of the caller's program; None when it is not theirs.
pub async fn program_methods(
    db: impl PgExecutor<'_>,
    user: Uuid,
    program: Uuid,
) -> sqlx::Result<Option<Vec<Method>>> {
    // One round trip: the program row comes back even when it has no methods.
    let rows: Vec<MaybeMethod> = sqlx::query_as(
        "SELECT m.id, m.name, m.description, m.kind, m.duration_minutes, m.media_url, m.goal_ids, m.mindset_category_ids
         FROM programs p LEFT JOIN methods m ON m.id = ANY (p.method_ids) AND m.deleted_at IS NULL
         WHERE p.user_id = $1 AND p.id = $2 ORDER BY m.sort_order, m.name",
    )
    .bind(user)
    .bind(program)
    .fetch_all(db)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|m| {
                Some(Method {
                    id: m.id?,
                    name: m.name?,
                    description: m.description,
                    kind: m.kind?,
                    duration_minutes: m.duration_minutes,
                    media_url: m.media_url,
                    goal_ids: m.goal_ids.unwrap_or_default(),
                    mindset_category_ids: m.mindset_category_ids.unwrap_or_default(),
                })
            })
            .collect(),
    ))
}

/// A method from an outer join: all columns null when the program has none.
#[derive(sqlx::FromRow)]
struct MaybeMethod {
    id: Option<Uuid>,
    name: Option<String>,
    description: Option<String>,
    kind: Option<String>,
    duration_minutes: Option<i32>,
    media_url: Option<String>,
    goal_ids: Option<Vec<Uuid>>,
    mindset_category_ids: Option<Vec<Uuid>>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Goal {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
}

pub async fn goals(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Goal>> {
    sqlx::query_as("SELECT id, name, description FROM goals WHERE deleted_at IS NULL AND is_active ORDER BY sort_order, name").fetch_all(db).await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Overtuiging {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub mindset_category_id: Option<Uuid>,
    pub goal_ids: Vec<Uuid>,
    pub level: i16,
}

/// Overtuigingen, optionally only those linked to any of `goals` (GIN index on goal_ids).
pub async fn overtuigingen(
    db: impl PgExecutor<'_>,
    goals: &[Uuid],
) -> sqlx::Result<Vec<Overtuiging>> {
    sqlx::query_as(
        "SELECT id, name, description, mindset_category_id, goal_ids, level FROM overtuigingen
         WHERE deleted_at IS NULL AND (cardinality($1::uuid[]) = 0 OR goal_ids && $1) ORDER BY level, sort_order, name",
    )
    .bind(goals)
    .fetch_all(db)
    .await
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Company {
    pub id: Uuid,
    pub name: String,
}

pub async fn company_by_code(db: impl PgExecutor<'_>, code: &str) -> sqlx::Result<Option<Company>> {
    sqlx::query_as("SELECT id, name FROM companies WHERE lower(code) = lower($1) AND deleted_at IS NULL AND is_active").bind(code).fetch_optional(db).await
}
