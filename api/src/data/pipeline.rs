//! The two hottest reads (a user's programs, a user's habit days) on a few shared
//! tokio-postgres connections. Concurrent requests' queries are pipelined on them:
//! tokio-postgres writes every queued query in one go and reads their results in one go, so
//! under load a request costs a share of one write and one read instead of a pool checkout
//! and a round trip of its own. The SQL is the same as the sqlx data functions'.
//!
//! Contract: an answer is the database's answer; any failure (a dropped connection, an
//! error) returns None and the caller runs the sqlx version, which maps errors to the
//! API's stable codes. Used only without TLS (tokio-postgres brings none here).

use super::{programs::Program, usage::HabitUsage};
use chrono::NaiveDate;
use schema::postgres::{PgConfig, SslMode};
use std::{
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

#[derive(Clone, Copy)]
enum QueryCost {
    Cheap,
    Heavy,
}

struct Conn {
    client: Client,
    habits: Statement,
    programs: Statement,
}

pub struct Pipeline {
    conns: RwLock<Vec<Arc<Conn>>>,
    next: AtomicUsize,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn open(config: &tokio_postgres::Config) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "a pipelined read connection closed");
        }
    });
    let habits = client.prepare(super::usage::HABITS).await?;
    let programs = client.prepare(&super::programs::list_sql()).await?;
    Ok(Conn { client, habits, programs })
}

impl Pipeline {
    /// `n` connections, or None when the configuration asks for TLS or they cannot be
    /// opened (the sqlx pool serves everything then).
    pub async fn connect(pg: &PgConfig, n: usize) -> Option<Arc<Self>> {
        let tls = pg.parts().map_or(true, |p| {
            matches!(p.ssl, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
        });
        if n == 0 || tls {
            return None;
        }
        let mut config = tokio_postgres::Config::from_str(&pg.url).ok()?;
        // Its own name in pg_stat_activity: these connections are long-lived and shared.
        config.application_name(format!("{}-pipeline", pg.application_name));
        if let Some(t) = pg.query_timeout {
            config.options(format!("-c statement_timeout={}", t.as_millis()));
        }
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            match open(&config).await {
                Ok(c) => conns.push(Arc::new(c)),
                Err(e) => {
                    tracing::warn!(error = %e, "no pipelined reads: the sqlx pool serves them");
                    return None;
                }
            }
        }
        let pipeline = Arc::new_cyclic(|weak: &std::sync::Weak<Pipeline>| {
            let weak = weak.clone();
            let task = tokio::spawn(async move {
                // Replaces closed connections; requests skip them meanwhile.
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let Some(p) = weak.upgrade() else { return };
                    let closed: Vec<usize> = p
                        .conns
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.client.is_closed())
                        .map(|(i, _)| i)
                        .collect();
                    for i in closed {
                        if let Ok(c) = open(&config).await {
                            p.conns.write().unwrap_or_else(|e| e.into_inner())[i] = Arc::new(c);
                        }
                    }
                }
            });
            Pipeline { conns: RwLock::new(conns), next: AtomicUsize::new(0), task }
        });
        Some(pipeline)
    }

    /// A live connection of `lane`'s share, round robin. A quarter of the connections (at
    /// least one) carries the cheap habit reads, the rest the heavier program reads: a
    /// pipeline answers in order, so a cheap query queued behind a heavy one would wait for
    /// it, while cheap queries gain most from deep pipelining.
    fn pick(&self, cost: QueryCost) -> Option<Arc<Conn>> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        let cheap = (conns.len() / 4).max(1);
        let share = match cost {
            QueryCost::Cheap => &conns[..cheap.min(conns.len())],
            QueryCost::Heavy if conns.len() > cheap => &conns[cheap..],
            QueryCost::Heavy => &conns[..],
        };
        if share.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..share.len())
            .map(|k| &share[(start + k) % share.len()])
            .find(|c| !c.client.is_closed())
            .cloned()
    }

    pub async fn habits(
        &self,
        user: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Option<Vec<HabitUsage>> {
        let c = self.pick(QueryCost::Cheap)?;
        let started = std::time::Instant::now();
        let rows = c.client.query(&c.habits, &[&user, &from, &to]).await.ok()?;
        record("pipeline_habits", started);
        rows.iter()
            .map(|r| {
                Some(HabitUsage {
                    id: r.try_get(0).ok()?,
                    method_id: r.try_get(1).ok()?,
                    date: r.try_get(2).ok()?,
                })
            })
            .collect()
    }

    pub async fn programs(&self, user: Uuid) -> Option<Vec<Program>> {
        let c = self.pick(QueryCost::Heavy)?;
        let started = std::time::Instant::now();
        let rows = c.client.query(&c.programs, &[&user]).await.ok()?;
        record("pipeline_programs", started);
        rows.iter()
            .map(|r| {
                Some(Program {
                    id: r.try_get(0).ok()?,
                    name: r.try_get(1).ok()?,
                    start_date: r.try_get(2).ok()?,
                    end_date: r.try_get(3).ok()?,
                    goal_ids: r.try_get(4).ok()?,
                    method_ids: r.try_get(5).ok()?,
                    day_of_week_ids: r.try_get(6).ok()?,
                    motivation: r.try_get(7).ok()?,
                    planned_sessions: r.try_get(8).ok()?,
                    completed_sessions: r.try_get(9).ok()?,
                    percent_complete: r.try_get(10).ok()?,
                    created_at: r.try_get(11).ok()?,
                    updated_at: r.try_get(12).ok()?,
                })
            })
            .collect()
    }
}

/// The same histogram the pool's queries feed, under the pipelined query's name.
fn record(query: &'static str, started: std::time::Instant) {
    metrics::histogram!("db_query_duration_seconds", "query" => query, "outcome" => "ok")
        .record(started.elapsed().as_secs_f64());
}
