//! `floodgate-app serve | migrate | seed | admin create --email EMAIL`

use clap::{Parser, Subcommand};
use floodgate_app::{config::Settings, platform::db, seed, server};
use secrecy::SecretString;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "floodgate-app", version, about = "Floodgate commerce API")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP until SIGTERM.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Apply migrations and load demo data (safe to rerun).
    Seed,
    /// Administrative commands.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin (or promote and reset an existing user). The password is read from
    /// FLOODGATE_ADMIN_PASSWORD so it never appears in shell history or process lists.
    Create {
        #[arg(long)]
        email: String,
        #[arg(
            long = "password-env-only",
            env = "FLOODGATE_ADMIN_PASSWORD",
            hide = true,
            hide_env_values = true
        )]
        password: SecretString,
    },
}

fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .init();
}

/// The runtime: tokio's single-threaded scheduler when the process may use one core only
/// (`taskset`, or a container whose CPU limit is below 2, which `available_parallelism`
/// reads from the cgroup), as the load generator does; the work-stealing scheduler otherwise,
/// or whenever `TOKIO_WORKER_THREADS` names its thread count. With one core the work-stealing
/// scheduler has no one to steal for, and its cross-thread wake-ups and queues cost every
/// request (`docs/benchmarks/flame/README.md`).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let one_core = std::thread::available_parallelism().map_or(1, |n| n.get()) == 1;
    let mut builder = if one_core && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    cli.settings.validate()?;
    runtime()?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => server::run(cli.settings).await,
        Command::Migrate => {
            let pool = db::direct_pool(&cli.settings)?;
            db::migrate_with_retry(&pool, 30).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Seed => {
            let pool = db::direct_pool(&cli.settings)?;
            db::migrate_with_retry(&pool, 30).await?;
            seed::seed(&pool).await?;
            tracing::info!(
                admin = seed::DEMO_ADMIN,
                seller = seed::DEMO_SELLER,
                customer = seed::DEMO_CUSTOMER,
                "demo data loaded"
            );
            Ok(())
        }
        Command::Admin {
            command: AdminCommand::Create { email, password },
        } => {
            let pool = db::direct_pool(&cli.settings)?;
            db::migrate_with_retry(&pool, 30).await?;
            seed::create_admin(&pool, &email, &password).await?;
            tracing::info!(email, "admin ready");
            Ok(())
        }
    }
}
