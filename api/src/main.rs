#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::telemetry::init();
    let config = api::Config::from_env()?;
    let app = api::Application::build(config).await?;
    tracing::info!(port = app.port(), "api listening");
    app.run_until_stopped().await?;
    Ok(())
}
