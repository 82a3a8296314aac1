//! Shared helpers for the benchmarks: percentiles and table printing.

use std::time::Duration;

/// The `p`-th percentile (0..=100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Prints a Markdown table (pasteable into an issue note).
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}|", headers.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// A throwaway cluster with `settings` and a fresh database `name` on it; returns both and the
/// database's URL.
pub async fn cluster_with_database(
    settings: &[(&str, &str)],
    name: &str,
) -> (testkit::Cluster, String) {
    let settings: Vec<(String, String)> =
        settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let cluster = tokio::task::spawn_blocking(move || {
        testkit::Cluster::start(testkit::ClusterOptions {
            settings,
            ..testkit::ClusterOptions::default()
        })
    })
    .await
    .expect("join")
    .expect("cluster");
    let admin = sqlx::PgPool::connect(&cluster.url("postgres")).await.expect("admin");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("database");
    admin.close().await;
    let url = cluster.url(name);
    (cluster, url)
}
