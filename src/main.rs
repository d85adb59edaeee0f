use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let json = std::env::var(reelay::config::env::LOG_FORMAT).is_ok_and(|v| v == "json");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a file or a pipe gets none.
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.with_target(false).init();
    }
    if let Err(e) = reelay::cli::main().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
