//! The Airtable side of end-to-end tests: an emulator shaped by the mapping, reference data
//! mirrored into it, the daemon streaming into it, and an exact comparison of the two sides.

use airtable_emulator::{Emulator, EmulatorConfig, RateLimits, SchemaFile};
use cdc::{
    airtable::{cells, AirtableClient, AirtableConfig, Budget},
    destination::airtable::AirtableDestination,
    replication::StreamHealth,
    run::RunError,
};
use schema::mapping::Mapping;
use serde_json::{json, Map, Value};
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

pub const BASE: &str = "appCOACHTEST00001";
pub const TOKEN: &str = "patTESTSYNC";

pub fn mapping() -> Arc<Mapping> {
    Arc::new(Mapping::default_mapping().expect("mapping"))
}

/// The emulator's schema for `mapping`, edited by `tweak` (to make Airtable refuse things).
pub fn schema_for(mapping: &Mapping, tweak: impl FnOnce(&mut Value)) -> SchemaFile {
    let mut s = mapping.airtable_schema(BASE, "Coach");
    tweak(&mut s);
    serde_json::from_value(s).expect("schema file")
}

pub async fn emulator(schema: SchemaFile, limits: RateLimits) -> Emulator {
    let mut c = EmulatorConfig::new(TOKEN);
    c.schema = Some(schema);
    c.limits = limits;
    Emulator::start(c, "127.0.0.1:0".parse().expect("addr")).await.expect("emulator")
}

/// Creates the Airtable records of every table whose rows Airtable owns (reference data and
/// users: their Airtable-owned fields) from Postgres, and maps them: the state of a base
/// whose admins made this data.
pub async fn mirror_reference_data(
    e: &Emulator,
    base: &str,
    pool: &sqlx::PgPool,
    mapping: &Mapping,
) {
    let mut ids: HashMap<(String, Uuid), String> = HashMap::new();
    for t in mapping.tables.iter().filter(|t| t.table.rows_owned_by_airtable()) {
        let rows: Vec<(Uuid, Value)> = sqlx::query_as(&format!(
            "SELECT id, to_jsonb(t) FROM \"{}\" t ORDER BY id",
            t.table.name
        ))
        .fetch_all(pool)
        .await
        .expect("rows");
        let mut records = Vec::new();
        for (id, row) in &rows {
            let mut f = Map::new();
            f.insert(mapping.merge_field.clone(), json!(id.to_string()));
            for c in t.inbound() {
                let v = row.get(&c.column).cloned().unwrap_or(Value::Null);
                let cell = match &c.field.link {
                    Some(target) => json!(cells::link_ids(&v)
                        .iter()
                        .filter_map(|u| ids.get(&(target.clone(), *u)).cloned())
                        .collect::<Vec<_>>()),
                    None => cells::cell(&c.field.kind, &v).expect("cell"),
                };
                f.insert(c.field.field.clone(), cell);
            }
            records.push(Value::Object(f));
        }
        if records.is_empty() {
            continue;
        }
        let created = e.admin().create_records(base, &t.airtable, records).expect("mirror");
        for ((id, _), rec) in rows.iter().zip(created) {
            let rid = rec["id"].as_str().expect("id").to_owned();
            sqlx::query("INSERT INTO airtable_id_map (table_name, pg_id, airtable_record_id) VALUES ($1, $2, $3)")
                .bind(t.table.name)
                .bind(id)
                .bind(&rid)
                .execute(pool)
                .await
                .expect("map");
            ids.insert((t.table.name.to_owned(), *id), rid);
        }
    }
}

/// `cdc run` (binary `bin`) against emulator `e`, with its slot, publication and ops port,
/// logging warnings only; callers add their own settings and stdio.
pub fn cdc_run(
    bin: &std::path::Path,
    database_url: &str,
    slot: &str,
    publication: &str,
    metrics_port: u16,
    e: &Emulator,
) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.arg("run")
        .env("DATABASE_URL", database_url)
        .env("CDC_SLOT", slot)
        .env("CDC_PUBLICATION", publication)
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("AIRTABLE_API_URL", e.url())
        .env("AIRTABLE_TOKEN", TOKEN)
        .env("AIRTABLE_BASE_ID", BASE)
        // Test pacing for the leader lock: a takeover after a crash waits 600 ms, not 3 s.
        .env("SYNC_LEADER_POLL_MS", "100")
        .env("SYNC_LEADER_CHECK_MS", "200")
        .env("SYNC_LEADER_LEASE_MS", "600")
        .env("RUST_LOG", "warn");
    c
}

/// Fast pacing for tests, against emulator `e`; no request budget (set one where the
/// emulator limits).
pub fn airtable_config(e: &Emulator) -> AirtableConfig {
    let mut c = AirtableConfig::new(e.url(), TOKEN, BASE);
    c.base_rps = 0;
    c.token_rps = 0;
    c.flush_window = Duration::from_millis(50);
    c.backoff_min = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(100);
    c.max_attempts = 30;
    c.reconcile_delay = Duration::from_millis(500);
    c
}

/// The daemon's stream and Airtable destination, running.
pub struct Syncing {
    pub health: Arc<StreamHealth>,
    shutdown: watch::Sender<bool>,
    pub task: JoinHandle<Result<AirtableDestination, RunError>>,
}

pub async fn start_sync(
    url: &str,
    slot: &str,
    publication: &str,
    config: AirtableConfig,
    mapping: Arc<Mapping>,
) -> Syncing {
    let budget = Arc::new(config.budget());
    start_sync_sharing(url, slot, publication, config, mapping, budget).await
}

/// As [`start_sync`], spending `budget` (shared with the inbound side, as in `cdc run`).
pub async fn start_sync_sharing(
    url: &str,
    slot: &str,
    publication: &str,
    config: AirtableConfig,
    mapping: Arc<Mapping>,
    budget: Arc<Budget>,
) -> Syncing {
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(url).await.expect("pool");
    let client = Arc::new(AirtableClient::new(config, budget).expect("client"));
    let destination = AirtableDestination::new(client, mapping.clone(), pool);
    // The daemon's own wiring (checks, slot, ops listener on a free port), test pacing.
    let daemon = cdc::run::Daemon::build(
        &crate::cdc::daemon_config(url, slot, publication),
        &mapping,
        destination,
        None,
    )
    .await
    .expect("the daemon builds");
    let health = daemon.health();
    let (shutdown, rx) = watch::channel(false);
    let task = tokio::spawn(daemon.run_until(rx));
    // Leading and streaming: the slot exists, so what the test writes next is streamed.
    crate::cdc::wait_until(Duration::from_secs(30), "the daemon leads and streams", || async {
        health.connected.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    Syncing { health, shutdown, task }
}

impl Syncing {
    pub async fn stop(self) -> AirtableDestination {
        let _ = self.shutdown.send(true);
        match self.task.await.expect("join") {
            Ok(d) => d,
            Err(e) => panic!("stream failed: {e}"),
        }
    }

    /// A crash: the task is killed wherever it is, nothing is flushed or confirmed.
    pub async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Every outbound table as Postgres says Airtable should have it, and as Airtable has it:
/// pg id -> fields (empties dropped, links as record ids, derived fields ignored).
pub async fn compare(e: &Emulator, pool: &sqlx::PgPool, mapping: &Mapping) -> Result<(), String> {
    let mut problems = Vec::new();
    for t in mapping.tables.iter().filter(|t| t.outbound().next().is_some()) {
        let rows: Vec<(Uuid, Value)> =
            sqlx::query_as(&format!("SELECT id, to_jsonb(t) FROM \"{}\" t", t.table.name))
                .fetch_all(pool)
                .await
                .map_err(|e| e.to_string())?;
        let map: HashMap<(String, Uuid), String> = sqlx::query_as::<_, (String, Uuid, String)>(
            "SELECT table_name, pg_id, airtable_record_id FROM airtable_id_map",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(t, p, r)| ((t, p), r))
        .collect();
        let records = e.admin().records(BASE, &t.airtable).map_err(|e| format!("{e:?}"))?;
        let mut by_pg: HashMap<String, Vec<&Value>> = HashMap::new();
        for r in &records {
            by_pg
                .entry(r["fields"][&mapping.merge_field].as_str().unwrap_or("").to_owned())
                .or_default()
                .push(r);
        }
        if records.len() != rows.len() {
            problems.push(format!(
                "{}: Postgres has {} rows, Airtable {} records",
                t.table.name,
                rows.len(),
                records.len()
            ));
        }
        for (id, row) in &rows {
            let Some(found) = by_pg.get(&id.to_string()) else {
                problems.push(format!("{} {id}: missing in Airtable", t.table.name));
                continue;
            };
            if found.len() > 1 {
                problems.push(format!(
                    "{} {id}: {} duplicates in Airtable",
                    t.table.name,
                    found.len()
                ));
            }
            let fields = &found[0]["fields"];
            for c in t.outbound() {
                let v = row.get(&c.column).cloned().unwrap_or(Value::Null);
                let expected = match &c.field.link {
                    Some(target) => json!(uuids(&v)
                        .iter()
                        .map(|u| map
                            .get(&(target.clone(), *u))
                            .cloned()
                            .unwrap_or_else(|| format!("unmapped {u}")))
                        .collect::<Vec<_>>()),
                    None => expected_cell(c.field.kind.as_str(), &v),
                };
                let actual = fields.get(&c.field.field).cloned().unwrap_or(Value::Null);
                let empty = |x: &Value| {
                    x.is_null() || x == &json!("") || x == &json!([]) || x == &json!(false)
                };
                let same = (empty(&expected) && empty(&actual))
                    || expected == actual
                    || (expected.as_f64().is_some() && expected.as_f64() == actual.as_f64());
                if !same {
                    problems.push(format!(
                        "{} {id} {}: Postgres {expected}, Airtable {actual}",
                        t.table.name, c.field.field
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(20);
        Err(problems.join("\n"))
    }
}

/// The uuids a link column holds (a uuid or a uuid[]).
fn uuids(v: &Value) -> Vec<Uuid> {
    match v {
        Value::String(s) => s.parse().into_iter().collect(),
        Value::Array(a) => a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect(),
        _ => Vec::new(),
    }
}

/// What Airtable should hold for a Postgres value (as `to_jsonb` gives it) in a field of
/// `kind`, written from Airtable's field model and independent of the daemon's conversion,
/// so a conversion bug shows up as a difference.
fn expected_cell(kind: &str, v: &Value) -> Value {
    let joined = |sep: &str| match v {
        Value::Array(a) => Value::String(
            a.iter()
                .filter(|x| !x.is_null())
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(sep),
        ),
        Value::String(_) => v.clone(),
        other => Value::String(other.to_string()),
    };
    match (kind, v) {
        (_, Value::Null) => Value::Null,
        ("multilineText", _) => joined("\n"),
        ("singleLineText" | "email" | "url" | "phoneNumber" | "singleSelect", _) => joined(", "),
        ("number", Value::String(s)) => s.parse::<f64>().map(|f| json!(f)).unwrap_or(Value::Null),
        ("number" | "checkbox", _) => v.clone(),
        ("date", Value::String(s)) => json!(s.chars().take(10).collect::<String>()),
        ("dateTime", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| {
                json!(t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            })
            .unwrap_or(Value::Null),
        ("multipleSelects", Value::Array(a)) => {
            json!(a.iter().filter(|x| !x.is_null()).collect::<Vec<_>>())
        }
        _ => Value::String(format!("no expectation for a {kind} field")),
    }
}
