//! Thin binary: parse the command line, run the command, exit with its code.

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "floodgate_loadtest=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = floodgate_loadtest::cli::Cli::parse();
    // Pinned to one core (as benchmarks pin the generator), a single-threaded runtime
    // avoids the work-stealing scheduler's cross-thread bookkeeping.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let code = match builder.enable_all().build() {
        Ok(rt) => match rt.block_on(floodgate_loadtest::commands::execute(cli)) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
