use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cdc::cli::Cli::parse();
    let level = if matches!(cli.command, cdc::cli::Command::Run { .. }) { "info" } else { "warn" };
    cdc::telemetry::init(cli.log_format, level);
    match cdc::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Operators read this; the chain names the cause and, where we know it, the fix.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
