//! Test support: a real, throwaway PostgreSQL (never a mock) and fresh migrated databases.

pub mod airtable;
pub mod api;
pub mod bin;
pub mod cdc;
pub mod convex;
pub mod ha;
pub mod inbound;
pub mod legacy;
pub mod pg;

pub use bin::{cargo_bin, cdc_output};
pub use pg::{
    empty_db, migrated_db_on, shared_cluster, test_db, Cluster, ClusterOptions, TestDb, TEST_ROLES,
};

/// The value of one series (`name{labels}` exactly as exported) in Prometheus text; 0 when
/// absent.
pub fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The Prometheus text served at `url` (empty when it cannot be fetched).
pub async fn metrics_text(http: &reqwest::Client, url: &str) -> String {
    match http.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}
