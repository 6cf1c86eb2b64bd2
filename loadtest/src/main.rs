//! Thin binary: parse the command line, run the command, exit with its code.

use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "floodgate_loadtest=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = floodgate_loadtest::cli::Cli::parse();
    let code = match floodgate_loadtest::commands::execute(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
