//! `cdc check`: is this database ready for the daemon? Each problem comes with its fix.

use super::{publication, quote_ident, slot, SqlError};
use serde::Serialize;
use tokio_postgres::Client;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    /// `cdc run` cannot work until this is fixed (exit 1).
    Fail,
    /// Missing, and `cdc run` creates it on start.
    WillCreate,
    /// Works, but an operator should act (fails only with `--strict`).
    Advice,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    /// Whether this finding fails the check (`strict`: advice and creations fail too).
    pub fn fails(&self, strict: bool) -> bool {
        match self.level {
            Level::Ok => false,
            Level::Fail => true,
            Level::WillCreate | Level::Advice => strict,
        }
    }
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding { check, level: Level::Ok, detail: detail.into(), fix: None }
}

fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check, level: Level::Fail, detail: detail.into(), fix: Some(fix.into()) }
}

fn will_create(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check, level: Level::WillCreate, detail: detail.into(), fix: Some(fix.into()) }
}

fn advice(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding { check, level: Level::Advice, detail: detail.into(), fix: Some(fix.into()) }
}

async fn setting(client: &Client, name: &str) -> Result<String, SqlError> {
    Ok(client.query_one("SELECT current_setting($1)", &[&name]).await?.get(0))
}

/// Runs every check for `slot_name`, `publication_name` and the tables to publish.
pub async fn run(
    client: &Client,
    slot_name: &str,
    publication_name: &str,
    tables: &[(String, String)],
) -> Result<Vec<Finding>, SqlError> {
    let mut out = Vec::new();
    let restart = "then restart PostgreSQL (this setting needs a restart)";

    let wal_level = setting(client, "wal_level").await?;
    out.push(if wal_level == "logical" {
        ok("wal_level", "logical")
    } else {
        fail(
            "wal_level",
            format!("{wal_level}: logical decoding needs logical"),
            format!("ALTER SYSTEM SET wal_level = logical; {restart}"),
        )
    });

    let slot = slot::status(client, slot_name).await?;
    let max_slots: i64 = setting(client, "max_replication_slots").await?.parse().unwrap_or(0);
    let used_slots: i64 =
        client.query_one("SELECT count(*) FROM pg_replication_slots", &[]).await?.get(0);
    let needed = used_slots + i64::from(slot.is_none());
    out.push(if needed <= max_slots {
        ok("max_replication_slots", format!("{used_slots} of {max_slots} used"))
    } else {
        fail(
            "max_replication_slots",
            format!("{used_slots} of {max_slots} used, none left for {slot_name}"),
            format!("ALTER SYSTEM SET max_replication_slots = {}; {restart}", needed + 2),
        )
    });

    let max_senders: i64 = setting(client, "max_wal_senders").await?.parse().unwrap_or(0);
    let senders: i64 =
        client.query_one("SELECT count(*) FROM pg_stat_replication", &[]).await?.get(0);
    let ours_running = slot.as_ref().is_some_and(|s| s.active);
    out.push(if senders + i64::from(!ours_running) <= max_senders {
        ok("max_wal_senders", format!("{senders} of {max_senders} in use"))
    } else {
        fail(
            "max_wal_senders",
            format!("{senders} of {max_senders} in use, none left for the daemon"),
            format!("ALTER SYSTEM SET max_wal_senders = {}; {restart}", senders + 3),
        )
    });

    let (user, can_replicate): (String, bool) = {
        let r = client.query_one("SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user", &[]).await?;
        (r.get(0), r.get(1))
    };
    out.push(if can_replicate {
        ok("replication privilege", format!("role {user} may replicate"))
    } else {
        fail(
            "replication privilege",
            format!("role {user} lacks REPLICATION"),
            format!("ALTER ROLE {} REPLICATION;", quote_ident(&user)),
        )
    });

    let keep = setting(client, "max_slot_wal_keep_size").await?;
    out.push(if keep != "-1" {
        ok("max_slot_wal_keep_size", keep)
    } else {
        advice(
            "max_slot_wal_keep_size",
            "-1 (unlimited): a stalled daemon makes the slot keep WAL until the disk is full",
            "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf();",
        )
    });

    // The walsender sends only flushed WAL: an asynchronous commit reaches the stream when
    // the WAL writer flushes it, so sync latency grows by up to wal_writer_delay.
    let sync_commit = setting(client, "synchronous_commit").await?;
    out.push(if sync_commit != "off" {
        ok("synchronous_commit", sync_commit)
    } else {
        let delay = setting(client, "wal_writer_delay").await?;
        advice(
            "synchronous_commit",
            format!("off: a commit reaches the stream only when the WAL writer flushes it (every wal_writer_delay, {delay}), which adds up to that much to every change's sync latency"),
            "ALTER SYSTEM SET synchronous_commit = on; SELECT pg_reload_conf(); (or lower wal_writer_delay)",
        )
    });

    for (schema_name, table) in tables {
        let qualified = format!("{}.{}", quote_ident(schema_name), quote_ident(table));
        let row = client
            .query_opt(
                "SELECT c.relreplident::text, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
                 FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&qualified],
            )
            .await?;
        let name = format!("{schema_name}.{table}");
        out.push(match row {
            None => fail("replica identity", format!("{name} does not exist"), "run `cdc migrate`"),
            Some(r) => {
                let identity: String = r.get(0);
                let has_pk: bool = r.get(1);
                match (identity.as_str(), has_pk) {
                    ("f", _) => ok("replica identity", format!("{name}: full")),
                    ("i", _) => ok("replica identity", format!("{name}: index")),
                    ("d", true) => ok("replica identity", format!("{name}: primary key")),
                    _ => fail(
                        "replica identity",
                        format!("{name}: deletes would carry no key"),
                        format!(
                            "ALTER TABLE {qualified} REPLICA IDENTITY FULL; (or add a primary key)"
                        ),
                    ),
                }
            }
        });
    }

    // `cdc run` creates a missing publication when its role owns the tables; otherwise it
    // refuses, and the owner runs `cdc publication sync`.
    let owns_tables: bool = client
        .query_one(
            "SELECT coalesce(bool_and(pg_has_role(current_user, c.relowner, 'USAGE')), true)
               FROM unnest($1::text[]) AS t(name) JOIN pg_class c ON c.oid = to_regclass(t.name)",
            &[&tables
                .iter()
                .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
                .collect::<Vec<_>>()],
        )
        .await?
        .get(0);
    out.push(match publication::tables(client, publication_name).await? {
        None if owns_tables => will_create(
            "publication",
            format!("{publication_name} does not exist"),
            "cdc run creates it (or run `cdc publication sync`)",
        ),
        None => fail(
            "publication",
            format!("{publication_name} does not exist, and role {user} may not create it (it must own the tables)"),
            "run `cdc publication sync` as the schema owner (a member of coach_migrator)",
        ),
        Some(current) => {
            let missing: Vec<String> = tables.iter().filter(|t| !current.contains(t)).map(|(s, t)| format!("{s}.{t}")).collect();
            let extra: Vec<String> = current.iter().filter(|c| !tables.contains(c)).map(|(s, t)| format!("{s}.{t}")).collect();
            if missing.is_empty() && extra.is_empty() {
                ok("publication", format!("{publication_name}: {} tables", current.len()))
            } else {
                fail("publication", format!("{publication_name} differs from the mapping: missing {missing:?}, extra {extra:?}"), "cdc publication sync")
            }
        }
    });

    out.push(match &slot {
        None if can_replicate => will_create(
            "slot",
            format!("{slot_name} does not exist"),
            "cdc run creates it (or run `cdc slot create`)",
        ),
        None => fail(
            "slot",
            format!("{slot_name} does not exist, and role {user} may not create it"),
            "cdc slot create, as a role with REPLICATION",
        ),
        Some(s) => match s.problem() {
            Some(p) => fail("slot", p, "see the message"),
            None => ok(
                "slot",
                format!(
                    "{slot_name}: confirmed {:?}, wal_status {:?}",
                    s.confirmed_flush_lsn, s.wal_status
                ),
            ),
        },
    });

    out.push(failover_slot(client, slot_name, slot.is_some()).await?);

    let origin: bool = client
        .query_one(
            "SELECT has_function_privilege('pg_replication_origin_session_setup(text)', 'EXECUTE')",
            &[],
        )
        .await?
        .get(0);
    out.push(if origin {
        ok("replication origin", "may run inbound writes under a replication origin")
    } else {
        fail(
            "replication origin",
            format!("role {user} cannot use replication origins: inbound writes would echo back to Airtable"),
            "as a superuser: GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), pg_replication_origin_oid(text), pg_replication_origin_session_setup(text), pg_replication_origin_session_reset(), pg_replication_origin_xact_setup(pg_lsn, timestamptz) TO coach_sync;",
        )
    });
    Ok(out)
}

/// Whether the slot survives a primary failover: PostgreSQL 17 copies failover slots to
/// standbys; before it, a failover loses the slot.
async fn failover_slot(
    client: &Client,
    slot_name: &str,
    exists: bool,
) -> Result<Finding, SqlError> {
    let check = "failover slot";
    let version = slot::server_version(client).await?;
    if version < slot::FAILOVER_SLOTS_SINCE {
        return Ok(advice(
            check,
            format!("PostgreSQL {}: logical slots are not kept on standbys before 17, so a primary failover loses {slot_name}; after one, `cdc slot recover` makes a new slot and backfills everything", version / 10_000),
            "upgrade to PostgreSQL 17 or later: the daemon then creates its slot with failover = true",
        ));
    }
    if !exists {
        return Ok(ok(check, format!("{slot_name} will be created with failover = true")));
    }
    let failover: bool = client
        .query_one(
            "SELECT coalesce(bool_or(failover), false) FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot_name],
        )
        .await?
        .get(0);
    if !failover {
        return Ok(advice(
            check,
            format!("{slot_name} was created without failover: a primary failover loses it"),
            format!("on a replication connection: ALTER_REPLICATION_SLOT {slot_name} ( FAILOVER true );"),
        ));
    }
    // The standbys the primary waits for before sending changes: only they are sure to hold
    // the slot at the position the daemon confirmed.
    let standbys = setting(client, "synchronized_standby_slots").await?;
    let connected: Vec<String> = client
        .query(
            "SELECT slot_name::text FROM pg_replication_slots
             WHERE slot_type = 'physical' AND active AND slot_name = ANY (string_to_array(replace($1, ' ', ''), ','))",
            &[&standbys],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(if standbys.trim().is_empty() {
        advice(
            check,
            format!("{slot_name} has failover = true, but synchronized_standby_slots is empty: a promoted standby may hold the slot behind what the daemon confirmed"),
            "ALTER SYSTEM SET synchronized_standby_slots = '<the standby's physical slot>'; SELECT pg_reload_conf(); and on the standby: sync_replication_slots = on, hot_standby_feedback = on",
        )
    } else if connected.is_empty() {
        advice(
            check,
            format!("{slot_name} has failover = true, but no standby of synchronized_standby_slots ({standbys}) is connected: nothing holds a synchronized copy now"),
            "start the standby (its physical slot must be active); on it, `SELECT synced FROM pg_replication_slots` shows the copy",
        )
    } else {
        ok(
            check,
            format!(
                "{slot_name}: failover = true, synchronized to the standbys of {}",
                connected.join(", ")
            ),
        )
    })
}
