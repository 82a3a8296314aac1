use serde::Serialize;
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

/// Points, level, badges and streaks, all computed in SQL in one statement.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Rewards {
    /// Bonus points awarded for streaks and overtuigingen.
    pub bonus_points: i32,
    /// Points from usage: a habit or a personal goal 1, a method 2, an overtuiging 1.
    pub usage_points: i32,
    pub total_points: i32,
    /// 1 + one per 100 points.
    pub level: i32,
    pub badges: Vec<String>,
    pub habit_streak: i32,
    pub overtuiging_streak: i32,
}

/// A streak ending today or yesterday over the distinct days of `$table`.
fn streak_sql(table: &str) -> String {
    format!(
        "(SELECT coalesce((SELECT len FROM (
             SELECT max(date) AS last, count(*)::int AS len
             FROM (SELECT date, date - (row_number() OVER (ORDER BY date))::int AS grp
                   FROM (SELECT DISTINCT date FROM {table} WHERE user_id = $1 AND date <= current_date) days) d
             GROUP BY grp) runs WHERE last >= current_date - 1 ORDER BY last DESC LIMIT 1), 0))"
    )
}

pub async fn rewards(db: impl PgExecutor<'_>, user: Uuid) -> sqlx::Result<Option<Rewards>> {
    let sql = format!(
        "WITH c AS (
             SELECT u.bonus_points,
                    (SELECT count(*) FROM habit_usage WHERE user_id = $1)::int AS habits,
                    (SELECT count(*) FROM method_usage WHERE user_id = $1)::int AS methods,
                    (SELECT count(*) FROM overtuiging_usage WHERE user_id = $1)::int AS overtuigingen,
                    (SELECT count(*) FROM personal_goal_usage WHERE user_id = $1)::int AS goals,
                    {habit_streak} AS habit_streak,
                    {overtuiging_streak} AS overtuiging_streak
             FROM users u WHERE u.id = $1),
         p AS (SELECT c.*, habits + 2 * methods + overtuigingen + goals AS usage_points FROM c)
         SELECT bonus_points, usage_points, bonus_points + usage_points AS total_points,
                1 + (bonus_points + usage_points) / 100 AS level,
                array_remove(ARRAY[
                    CASE WHEN usage_points > 0 THEN 'first_step' END,
                    CASE WHEN habits >= 10 THEN 'habit_builder' END,
                    CASE WHEN methods >= 25 THEN 'method_explorer' END,
                    CASE WHEN greatest(habit_streak, overtuiging_streak) >= 7 THEN 'week_streak' END,
                    CASE WHEN greatest(habit_streak, overtuiging_streak) >= 30 THEN 'month_streak' END,
                    CASE WHEN bonus_points + usage_points >= 100 THEN 'centurion' END
                ], NULL) AS badges,
                habit_streak, overtuiging_streak
         FROM p",
        habit_streak = streak_sql("habit_usage"),
        overtuiging_streak = streak_sql("overtuiging_usage"),
    );
    sqlx::query_as(&sql).bind(user).fetch_optional(db).await
}
