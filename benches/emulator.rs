//! The emulator must never be the bottleneck: record writes per second in 10-record batches,
//! limits off, over keep-alive connections on loopback. Goal: ≥ 20,000 records/s.
//!
//! `cargo bench -p benches --bench emulator`

use airtable_emulator::{Emulator, EmulatorConfig, SchemaFile};
use benches::{percentile, print_table};
use serde_json::json;
use std::time::{Duration, Instant};

const BASE: &str = "appBENCH000000001";

fn schema() -> SchemaFile {
    serde_json::from_value(
        json!({ "bases": [{ "id": BASE, "name": "Bench", "tables": [{ "name": "Rows", "fields": [
            { "name": "pg_id", "type": "singleLineText" },
            { "name": "Name", "type": "singleLineText" },
            { "name": "Count", "type": "number" },
            { "name": "Done", "type": "checkbox" },
            { "name": "Day", "type": "date" }
        ]}]}]}),
    )
    .expect("schema")
}

/// Sends `requests` write requests of 10 records over `connections` clients; returns
/// (records/s, request latencies).
async fn run(
    url: &str,
    run_id: usize,
    connections: usize,
    requests: usize,
    upsert: bool,
) -> (f64, Vec<Duration>) {
    let per_conn = requests / connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::with_capacity(per_conn);
            for i in 0..per_conn {
                let records: Vec<_> = (0..10)
                    .map(|k| json!({ "fields": { "pg_id": format!("{run_id}-{c}-{i}-{k}"), "Name": "row", "Count": k, "Done": k % 2 == 0, "Day": "2026-11-21" } }))
                    .collect();
                let t = Instant::now();
                let req = if upsert {
                    http.patch(format!("{url}/v0/{BASE}/Rows")).json(&json!({ "performUpsert": { "fieldsToMergeOn": ["pg_id"] }, "records": records }))
                } else {
                    http.post(format!("{url}/v0/{BASE}/Rows")).json(&json!({ "records": records }))
                };
                let resp = req.bearer_auth("bench").send().await.expect("send");
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    ((per_conn * connections * 10) as f64 / secs, all)
}

#[tokio::main]
async fn main() {
    let mut config = EmulatorConfig::new("bench").unlimited();
    config.schema = Some(schema());
    let emulator =
        Emulator::start(config, "127.0.0.1:0".parse().expect("addr")).await.expect("start");
    let url = emulator.url();
    // Warm up connections and allocations.
    run(&url, 0, 4, 200, false).await;
    let mut rows = Vec::new();
    let mut run_id = 0;
    for (label, upsert) in [("create", false), ("upsert (performUpsert on pg_id)", true)] {
        for connections in [4, 16] {
            run_id += 1;
            let (rate, mut lat) = run(&url, run_id, connections, 4_000, upsert).await;
            rows.push(vec![
                label.to_owned(),
                connections.to_string(),
                format!("{rate:.0}"),
                format!("{:.2}", percentile(&mut lat, 50.0).as_secs_f64() * 1000.0),
                format!("{:.2}", percentile(&mut lat, 99.0).as_secs_f64() * 1000.0),
                if rate >= 20_000.0 { "yes".into() } else { "NO".into() },
            ]);
        }
    }
    let records = emulator.admin().stats().records_written;
    println!(
        "\nEmulator write throughput, 10-record batches, limits off ({records} records written)\n"
    );
    print_table(&["operation", "connections", "records/s", "p50 ms", "p99 ms", ">= 20k/s"], &rows);
}
