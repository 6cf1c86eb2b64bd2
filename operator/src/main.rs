//! `floodgate-operator`: a thin CLI over the library.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "floodgate-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (or write one file per CRD into --out-dir).
    Crd {
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir: None } => print!("{}", floodgate_operator::crd::render_all()?),
        Command::Crd { out_dir: Some(dir) } => {
            for (file, crd) in floodgate_operator::crd::all() {
                std::fs::write(dir.join(file), floodgate_operator::crd::to_yaml(&crd)?)?;
            }
        }
    }
    Ok(())
}
