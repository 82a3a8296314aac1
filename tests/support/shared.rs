//! One cluster per test process, a migrated template database, and a fresh database per test
//! cloned from it (CREATE DATABASE ... TEMPLATE is a file copy: milliseconds, not a migration).

use super::{Cluster, ClusterOptions};
use sqlx::{postgres::PgPoolOptions, Connection, PgConnection, PgPool};
use std::sync::OnceLock;
use tokio::sync::OnceCell;

const TEMPLATE: &str = "coach_template";

/// Login roles for each group role, created once per cluster: (login, group).
pub const TEST_ROLES: &[(&str, &str)] =
    &[("test_api", "coach_api"), ("test_sync", "coach_sync"), ("test_migrator", "coach_migrator")];

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();

/// The process-wide cluster (started on first use).
pub fn shared_cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| match Cluster::start(ClusterOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    })
}

/// A fresh database for one test; dropped (with FORCE) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub pool: PgPool,
    cluster: &'static Cluster,
}

impl TestDb {
    /// Superuser URL of this database.
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// URL of this database as one of [`TEST_ROLES`]' logins.
    pub fn url_as(&self, login: &str) -> String {
        self.cluster.url_as(login, &self.name)
    }

    pub fn cluster(&self) -> &'static Cluster {
        self.cluster
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.cluster.url("postgres");
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee; use a private one on a plain thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&url).await.ok()?;
                // A database with logical slots cannot be dropped: end their walsenders,
                // then drop the slots.
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL",
                )
                .bind(&name)
                .execute(&mut conn)
                .await;
                for _ in 0..100 {
                    let dropped = sqlx::query(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active",
                    )
                    .bind(&name)
                    .execute(&mut conn)
                    .await;
                    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_replication_slots WHERE database = $1")
                        .bind(&name)
                        .fetch_one(&mut conn)
                        .await
                        .unwrap_or(0);
                    if dropped.is_ok() && left == 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok();
                // Replication origins are cluster-wide and each one that was used holds one
                // of max_replication_slots' tracking slots until dropped: without this, the
                // suite runs out of them and later appliers cannot set up their sessions.
                let _ = sqlx::query(
                    "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin
                     WHERE roname IN ('coach_inbound_' || $1, 'coach_inbound_' || $1 || '_cli')",
                )
                .bind(&name)
                .execute(&mut conn)
                .await;
                dropped
            })
        })
        .join();
    }
}

/// A fresh database with every migration applied.
pub async fn test_db() -> TestDb {
    let cluster = shared_cluster();
    TEMPLATE_READY
        .get_or_init(|| async {
            if let Err(e) = build_template(cluster).await {
                panic!("cannot build the migrated template database: {e}");
            }
        })
        .await;
    create_db(cluster, Some(TEMPLATE)).await
}

/// A fresh migrated database on a cluster of the test's own (one started with settings the
/// shared cluster must not have); the cluster lives as long as the process.
pub async fn migrated_db_on(cluster: &'static Cluster) -> TestDb {
    let db = create_db(cluster, None).await;
    if let Err(e) = schema::postgres::migrate::run(&db.pool).await {
        panic!("cannot migrate the test database: {e}");
    }
    db
}

/// A fresh, empty database (no migrations), for tests of migrating itself.
pub async fn empty_db() -> TestDb {
    create_db(shared_cluster(), None).await
}

async fn create_db(cluster: &'static Cluster, template: Option<&str>) -> TestDb {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = match PgConnection::connect(&cluster.url("postgres")).await {
        Ok(c) => c,
        Err(e) => panic!("cannot connect to the test cluster: {e}"),
    };
    let sql = match template {
        Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    if let Err(e) = sqlx::query(&sql).execute(&mut admin).await {
        panic!("cannot create test database: {e}");
    }
    let pool = match PgPoolOptions::new().max_connections(10).connect(&cluster.url(&name)).await {
        Ok(p) => p,
        Err(e) => panic!("cannot connect to test database: {e}"),
    };
    TestDb { name, pool, cluster }
}

async fn build_template(cluster: &Cluster) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE \"{TEMPLATE}\"")).execute(&mut admin).await?;
    {
        let pool = PgPoolOptions::new().max_connections(1).connect(&cluster.url(TEMPLATE)).await?;
        schema::postgres::migrate::run(&pool).await?;
        for (login, group) in TEST_ROLES {
            let replication = if *group == "coach_sync" { " REPLICATION" } else { "" };
            sqlx::query(&format!("CREATE ROLE {login} LOGIN{replication} IN ROLE {group}"))
                .execute(&pool)
                .await?;
        }
        // Logins used by tests connect to the per-test databases cloned from here.
        sqlx::query(&format!("GRANT CONNECT ON DATABASE \"{TEMPLATE}\" TO PUBLIC"))
            .execute(&pool)
            .await?;
        pool.close().await;
    }
    // Cloning needs the template to have no connections.
    sqlx::query(&format!("ALTER DATABASE \"{TEMPLATE}\" WITH IS_TEMPLATE true"))
        .execute(&mut admin)
        .await?;
    Ok(())
}
