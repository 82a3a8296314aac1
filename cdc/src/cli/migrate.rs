//! `cdc migrate`: bring a database to this build's schema.

use anyhow::Context;
use schema::postgres::{self, migrate, PgConfig};

pub async fn run(config: &PgConfig, check_only: bool) -> anyhow::Result<()> {
    let pool = postgres::connect(config)
        .await
        .with_context(|| format!("cannot connect to {}", config.redacted_url()))?;
    if check_only {
        let states = migrate::status(&pool).await?;
        for s in &states {
            println!(
                "{:>4} {:<40} {}",
                s.version,
                s.description,
                if s.applied { "applied" } else { "pending" }
            );
        }
        migrate::ensure_current(&pool).await?;
        println!("database is current");
        return Ok(());
    }
    let applied = migrate::run(&pool).await?;
    if applied.is_empty() {
        println!("database is current; nothing to apply");
    }
    for m in &applied {
        println!("applied {} {}", m.version, m.description);
    }
    migrate::ensure_current(&pool).await?;
    pool.close().await;
    Ok(())
}
