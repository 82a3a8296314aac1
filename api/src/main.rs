// Requests allocate many small, short-lived buffers; glibc malloc showed up at ~13% of the
// API's CPU under load (malloc_consolidate included).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::telemetry::init();
    let config = api::Config::from_env()?;
    let app = api::Application::build(config).await?;
    tracing::info!(port = app.port(), "api listening");
    app.run_until_stopped().await?;
    Ok(())
}
