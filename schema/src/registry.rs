//! The table registry: what each table is for and who owns each field.
//!
//! Every field has exactly one owner. Postgres-owned fields are written by the API and
//! mirrored to Airtable by the daemon; Airtable-owned fields are written by admins in Airtable
//! and applied to Postgres by the daemon's inbound side. The database grants in
//! `migrations/0005_privileges.sql` follow this registry, and a test holds them to it.

/// Who may write a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Written through the API; Airtable receives a copy.
    Postgres,
    /// Written in Airtable; Postgres receives a copy.
    Airtable,
}

/// What a table is for, which decides the direction it syncs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// Postgres-authoritative user activity; synced outbound.
    Operational,
    /// Airtable-authoritative content; synced inbound.
    Reference,
    /// Some fields owned by each side; synced both ways, field by field.
    Mixed,
    /// Sync bookkeeping; never mirrored.
    Sync,
    /// Postgres-only state of the API (authentication); never mirrored.
    Private,
}

/// One column and its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub owner: Owner,
    /// Never leaves Postgres (e.g. password hashes), whatever the mapping says.
    pub secret: bool,
}

/// One table of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub name: &'static str,
    pub kind: TableKind,
    pub columns: &'static [Column],
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Columns written by `owner`.
    pub fn owned_by(&self, owner: Owner) -> impl Iterator<Item = &'static Column> {
        self.columns.iter().filter(move |c| c.owner == owner)
    }

    /// Whether Airtable decides which rows exist: records created there become rows, records
    /// deleted there are deleted (or soft-deleted, `deleted_at`) here. True exactly for the
    /// tables whose `deleted_at` Airtable owns; every other table's rows are Postgres's, and
    /// Airtable only edits the fields it owns in them.
    pub fn rows_owned_by_airtable(&self) -> bool {
        self.column("deleted_at").is_some_and(|c| c.owner == Owner::Airtable)
    }
}

const fn pg(name: &'static str) -> Column {
    Column { name, owner: Owner::Postgres, secret: false }
}
const fn at(name: &'static str) -> Column {
    Column { name, owner: Owner::Airtable, secret: false }
}
const fn secret(name: &'static str) -> Column {
    Column { name, owner: Owner::Postgres, secret: true }
}

macro_rules! table {
    ($name:literal, $kind:ident, [$($col:expr),* $(,)?]) => {
        Table { name: $name, kind: TableKind::$kind, columns: &[$($col),*] }
    };
}

/// Every table, parents before the children that reference them (the order links must be
/// written in, so a link never points at a record the other side lacks).
pub static TABLES: &[Table] = &[
    // Reference data, owned by Airtable in full.
    table!(
        "companies",
        Reference,
        [
            at("id"),
            at("name"),
            at("code"),
            at("is_active"),
            at("deleted_at"),
            at("created_at"),
            at("updated_at")
        ]
    ),
    table!(
        "goals",
        Reference,
        [
            at("id"),
            at("name"),
            at("description"),
            at("sort_order"),
            at("is_active"),
            at("deleted_at"),
            at("created_at"),
            at("updated_at")
        ]
    ),
    table!(
        "mindset_categories",
        Reference,
        [
            at("id"),
            at("name"),
            at("description"),
            at("sort_order"),
            at("deleted_at"),
            at("created_at"),
            at("updated_at")
        ]
    ),
    table!(
        "days_of_week",
        Reference,
        [at("id"), at("name"), at("iso_day"), at("deleted_at"), at("created_at"), at("updated_at")]
    ),
    table!(
        "methods",
        Reference,
        [
            at("id"),
            at("name"),
            at("description"),
            at("kind"),
            at("duration_minutes"),
            at("media_url"),
            at("goal_ids"),
            at("mindset_category_ids"),
            at("sort_order"),
            at("is_active"),
            at("deleted_at"),
            at("created_at"),
            at("updated_at")
        ]
    ),
    table!(
        "overtuigingen",
        Reference,
        [
            at("id"),
            at("name"),
            at("description"),
            at("mindset_category_id"),
            at("goal_ids"),
            at("level"),
            at("sort_order"),
            at("deleted_at"),
            at("created_at"),
            at("updated_at")
        ]
    ),
    table!(
        "prompts",
        Reference,
        [
            at("id"),
            at("key"),
            at("category"),
            at("title"),
            at("body"),
            at("deleted_at"),
            at("created_at"),
            at("updated_at")
        ]
    ),
    // Users: identity and provisioning in Airtable, credentials and rewards in Postgres.
    table!(
        "users",
        Mixed,
        [
            pg("id"),
            at("email"),
            at("name"),
            at("company_id"),
            at("role"),
            at("status"),
            at("language"),
            at("deleted_at"),
            secret("password_hash"),
            pg("password_set_at"),
            pg("bonus_points"),
            pg("badges"),
            pg("level"),
            pg("last_login_at"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    // Operational data, owned by Postgres in full.
    table!(
        "programs",
        Operational,
        [
            pg("id"),
            pg("user_id"),
            pg("name"),
            pg("start_date"),
            pg("end_date"),
            pg("goal_ids"),
            pg("method_ids"),
            pg("day_of_week_ids"),
            pg("motivation"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "program_schedule",
        Operational,
        [
            pg("id"),
            pg("program_id"),
            pg("user_id"),
            pg("date"),
            pg("day_of_week_id"),
            pg("method_ids"),
            pg("notes"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "method_usage",
        Operational,
        [
            pg("id"),
            pg("user_id"),
            pg("method_id"),
            pg("program_id"),
            pg("program_schedule_id"),
            pg("used_on"),
            pg("remark"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "habit_usage",
        Operational,
        [pg("id"), pg("user_id"), pg("method_id"), pg("date"), pg("created_at"), pg("updated_at")]
    ),
    // Personal goals: written by the user, answered by a coach in Airtable.
    table!(
        "personal_goals",
        Mixed,
        [
            pg("id"),
            pg("user_id"),
            pg("name"),
            pg("description"),
            pg("scheduled_day_ids"),
            pg("archived_at"),
            at("coach_feedback"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "personal_goal_usage",
        Operational,
        [
            pg("id"),
            pg("user_id"),
            pg("personal_goal_id"),
            pg("date"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "overtuiging_usage",
        Operational,
        [
            pg("id"),
            pg("user_id"),
            pg("overtuiging_id"),
            pg("program_id"),
            pg("date"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "persoonlijke_overtuigingen",
        Operational,
        [
            pg("id"),
            pg("user_id"),
            pg("program_id"),
            pg("name"),
            pg("completed_at"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    // Sync bookkeeping: written by the daemon (sync_outbox also by the API), never mirrored.
    table!(
        "airtable_id_map",
        Sync,
        [
            pg("table_name"),
            pg("pg_id"),
            pg("airtable_record_id"),
            pg("created_at"),
            pg("updated_at")
        ]
    ),
    table!(
        "sync_outbox",
        Sync,
        [pg("id"), pg("kind"), pg("table_name"), pg("pg_id"), pg("payload"), pg("created_at")]
    ),
    table!(
        "sync_dead_letter",
        Sync,
        [
            pg("id"),
            pg("direction"),
            pg("table_name"),
            pg("pg_id"),
            pg("airtable_record_id"),
            pg("operation"),
            pg("payload"),
            pg("error_code"),
            pg("error_message"),
            pg("attempts"),
            pg("status"),
            pg("first_failed_at"),
            pg("last_failed_at"),
            pg("resolved_at"),
            pg("created_at"),
            pg("updated_at"),
            pg("problem_key"),
            pg("payload_bytes"),
            pg("destination")
        ]
    ),
    table!("sync_inbox_events", Sync, [pg("source"), pg("event_key"), pg("applied_at")]),
    table!("sync_checkpoint", Sync, [pg("name"), pg("value"), pg("updated_at")]),
    table!(
        "sync_backfill",
        Sync,
        [
            pg("id"),
            pg("table_name"),
            pg("columns"),
            pg("predicate"),
            pg("reason"),
            pg("state"),
            pg("last_key"),
            pg("rows_done"),
            pg("rows_total"),
            pg("reconcile"),
            pg("requested_at"),
            pg("started_at"),
            pg("finished_at"),
            pg("updated_at"),
            pg("destination")
        ]
    ),
    table!(
        "sync_held_deletes",
        Sync,
        [
            pg("id"),
            pg("table_name"),
            pg("airtable_id"),
            pg("pg_id"),
            pg("state"),
            pg("held_at"),
            pg("decided_at")
        ]
    ),
    table!(
        "sync_pending_stamps",
        Sync,
        [pg("table_name"), pg("airtable_id"), pg("pg_id"), pg("queued_at")]
    ),
    table!(
        "sync_leader",
        Sync,
        [
            pg("slot_name"),
            pg("epoch"),
            pg("host"),
            pg("pid"),
            pg("ops_addr"),
            pg("backend_pid"),
            pg("since"),
            pg("heartbeat_at"),
            pg("penalty_until"),
            pg("released_at")
        ]
    ),
    // Authentication: written by the API only.
    table!(
        "refresh_tokens",
        Private,
        [
            pg("id"),
            pg("user_id"),
            pg("family_id"),
            secret("token_hash"),
            pg("expires_at"),
            pg("used_at"),
            pg("revoked_at"),
            pg("created_at")
        ]
    ),
    table!(
        "password_invitations",
        Private,
        [
            pg("id"),
            pg("user_id"),
            secret("code_hash"),
            pg("expires_at"),
            pg("used_at"),
            pg("created_by"),
            pg("created_at")
        ]
    ),
];

/// Derived views (computed in SQL, never stored).
pub static VIEWS: &[&str] = &["program_progress", "programs_with_progress"];

/// A derived view over one table's rows, and the tables whose changes move it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Derivation {
    pub view: &'static str,
    /// The table whose rows the view describes, and the view's column naming the row.
    pub of: &'static str,
    pub key: &'static str,
    /// (table, column holding the described row's id): a change to such a row moves the
    /// view for the row it names, before and after the change.
    pub sources: &'static [(&'static str, &'static str)],
}

/// What `program_progress` is computed from (its definition in 0012_progress_index.sql): the
/// program, its planning and its method usage. The sync recomputes it for every program these
/// changes touch, so no writer has to say so.
pub static DERIVATIONS: &[Derivation] = &[Derivation {
    view: "program_progress",
    of: "programs",
    key: "program_id",
    sources: &[("program_schedule", "program_id"), ("method_usage", "program_id")],
}];

/// The derivation describing `table`'s rows, if any.
pub fn derivation_of(table: &str) -> Option<&'static Derivation> {
    DERIVATIONS.iter().find(|d| d.of == table)
}

/// Looks a table up by its Postgres name.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// Tables of one kind, in dependency order.
pub fn tables_of(kind: TableKind) -> impl Iterator<Item = &'static Table> {
    TABLES.iter().filter(move |t| t.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_every_table_has_an_id_or_key() {
        let mut seen = HashSet::new();
        for t in TABLES {
            assert!(seen.insert(t.name), "duplicate table {}", t.name);
            let mut cols = HashSet::new();
            for c in t.columns {
                assert!(cols.insert(c.name), "duplicate column {}.{}", t.name, c.name);
            }
        }
    }

    #[test]
    fn reference_tables_are_wholly_airtable_owned_and_operational_wholly_postgres() {
        for t in tables_of(TableKind::Reference) {
            assert!(t.columns.iter().all(|c| c.owner == Owner::Airtable), "{}", t.name);
        }
        for t in tables_of(TableKind::Operational) {
            assert!(t.columns.iter().all(|c| c.owner == Owner::Postgres), "{}", t.name);
        }
        for t in tables_of(TableKind::Mixed) {
            assert!(t.owned_by(Owner::Airtable).next().is_some(), "{}", t.name);
            assert!(t.owned_by(Owner::Postgres).next().is_some(), "{}", t.name);
        }
    }

    #[test]
    fn secrets_are_postgres_owned() {
        let secrets: Vec<_> =
            TABLES.iter().flat_map(|t| t.columns.iter().filter(|c| c.secret)).collect();
        assert_eq!(secrets.len(), 3);
        assert!(secrets.iter().all(|c| c.owner == Owner::Postgres));
    }

    #[test]
    fn airtable_decides_which_rows_exist_for_reference_data_and_users_only() {
        for t in TABLES {
            let expected = t.kind == TableKind::Reference || t.name == "users";
            assert_eq!(t.rows_owned_by_airtable(), expected, "{}", t.name);
        }
    }
}
