//! The replication stream against pg_recvlogical, side by side on the same data and the
//! same kind of slot: rows/s draining a backlog, and the stream's peak RSS on a 1M-row
//! transaction. Goals: ≥ 0.9× pg_recvlogical's rows/s; peak RSS ≤ 100 MB.
//!
//! `cargo bench -p benches --bench replication`

use benches::print_table;
use cdc::{destination::NullDestination, replication::Stream};
use std::{
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};
use testkit::{cdc::prepare, Cluster};

async fn ours(url: &str, slot: &str, rows: u64) -> Duration {
    let null = NullDestination::default();
    let changes = null.changes.clone();
    let mut config = testkit::cdc::stream_config(url, slot, "bench_pub");
    config.buffer_events = 4096;
    let stream = Stream::new(config, null);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(stream.run(rx));
    while changes.load(Ordering::Relaxed) < rows {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let _ = tx.send(true);
    let _ = task.await;
    elapsed
}

fn theirs(cluster: &Cluster, slot: &str, endpos: &str) -> Duration {
    let bin = testkit::pg::find_bin_dir().expect("postgres binaries").join("pg_recvlogical");
    let started = Instant::now();
    let status = Command::new(bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "-d",
            "bench",
        ])
        .args([
            "--slot",
            slot,
            "--start",
            "--endpos",
            endpos,
            "-f",
            "/dev/null",
            "-F",
            "0",
            "--no-loop",
        ])
        .args(["-o", "proto_version=1", "-o", "publication_names=bench_pub"])
        .status()
        .expect("pg_recvlogical");
    assert!(status.success(), "pg_recvlogical failed");
    started.elapsed()
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::main]
async fn main() {
    let (cluster, url) = benches::cluster_with_database(
        &[
            ("max_wal_size", "8GB"),
            ("checkpoint_timeout", "1h"),
            ("logical_decoding_work_mem", "64MB"),
        ],
        "bench",
    )
    .await;
    let pool = sqlx::PgPool::connect(&url).await.expect("pool");
    sqlx::raw_sql(
        "CREATE TABLE bench_rows (id bigint PRIMARY KEY, user_id uuid NOT NULL, name text, amount numeric, done boolean, created_at timestamptz NOT NULL, tags text[]);
         CREATE PROCEDURE fill(n_tx int, per_tx int) LANGUAGE plpgsql AS $$
         DECLARE base bigint := coalesce((SELECT max(id) FROM bench_rows), 0);
         BEGIN
           FOR t IN 0 .. n_tx - 1 LOOP
             INSERT INTO bench_rows
               SELECT base + t::bigint * per_tx + g, gen_random_uuid(), 'row ' || g, g * 1.5, g % 2 = 0, now(), ARRAY['a', 'b']
               FROM generate_series(1, per_tx) g;
             COMMIT;
           END LOOP;
         END $$;",
    )
    .execute(&pool)
    .await
    .expect("schema");

    let mut rows_out = Vec::new();
    // The 1M-row transaction first, so the peak RSS read after it is its own.
    for (label, n_tx, per_tx) in [
        ("1M rows, one transaction", 1u64, 1_000_000u64),
        ("200k rows, 2,000 transactions of 100", 2_000, 100),
    ] {
        let rows = n_tx * per_tx;
        let slots: Vec<String> = (0..4).map(|i| format!("bench_{}_{i}", n_tx)).collect();
        for slot in &slots {
            prepare(&url, "bench_pub", &["bench_rows"], slot).await;
        }
        sqlx::query(&format!("CALL fill({n_tx}, {per_tx})")).execute(&pool).await.expect("fill");
        let endpos: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&pool)
            .await
            .expect("lsn");
        // Alternate, best of two each: both read the same WAL, the first run warms the cache.
        let t1 = tokio::task::block_in_place(|| theirs(&cluster, &slots[0], &endpos));
        let o1 = ours(&url, &slots[1], rows).await;
        let t2 = tokio::task::block_in_place(|| theirs(&cluster, &slots[2], &endpos));
        let o2 = ours(&url, &slots[3], rows).await;
        let (o, t) = (o1.min(o2), t1.min(t2));
        let ours_rate = rows as f64 / o.as_secs_f64();
        let theirs_rate = rows as f64 / t.as_secs_f64();
        rows_out.push(vec![
            label.to_owned(),
            format!("{rows}"),
            format!("{ours_rate:.0}"),
            format!("{theirs_rate:.0}"),
            format!("{:.2}×", ours_rate / theirs_rate),
            format!("{:.1}", peak_rss_mb()),
        ]);
        for slot in &slots {
            let _ =
                sqlx::query("SELECT pg_drop_replication_slot($1)").bind(slot).execute(&pool).await;
        }
    }
    println!("\nReplication: cdc stream (typed decoding, null destination) vs pg_recvlogical (bytes to /dev/null), best of 2\n");
    print_table(
        &[
            "backlog",
            "rows",
            "cdc rows/s",
            "pg_recvlogical rows/s",
            "ratio",
            "peak RSS MB (bench process)",
        ],
        &rows_out,
    );
}
