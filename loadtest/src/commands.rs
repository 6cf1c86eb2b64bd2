//! What each subcommand does, returning the process exit code (99 when a threshold or an
//! invariant failed, as k6 exits 99 on crossed thresholds).

use std::path::Path;

use anyhow::Context;

use crate::cli::{Cli, Command, RunArgs};
use crate::output::{console, summary};
use crate::report::RunData;
use crate::runner::{self, RunConfig};
use crate::scenarios;

pub const EXIT_FAILED_CHECKS: i32 = 99;

pub async fn execute(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::List => {
            for s in scenarios::all() {
                println!("{:<15} {}", s.name, s.description);
            }
            Ok(0)
        }
        Command::Run(args) => run(*args).await,
        Command::Merge {
            shards,
            summary_json,
        } => merge(&shards, summary_json.as_deref()),
        Command::CeilingServer {
            listen,
            body_bytes,
            redis_url,
        } => {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let from = if redis_url.is_some() {
                ", read from Redis"
            } else {
                ""
            };
            eprintln!(
                "ceiling server on http://{} ({body_bytes}-byte JSON{from})",
                listener.local_addr()?
            );
            crate::ceiling::serve(listener, body_bytes, redis_url.as_deref()).await?;
            Ok(0)
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let scenario = scenarios::find(&args.scenario).with_context(|| {
        format!(
            "unknown scenario {:?} (see `floodgate-loadtest list`)",
            args.scenario
        )
    })?;
    let options = args.options((scenario.options)())?;
    let data = runner::run(RunConfig {
        scenario,
        target: args.target.clone(),
        options,
        segment: args.segment,
        params: args.params()?,
        influxdb: args.influxdb.clone(),
        progress: !args.no_progress,
        request_timeout: args.timeout,
        hooks: runner::LoadHooks {
            start: args.exec_at_load_start.clone(),
            end: args.exec_at_load_end.clone(),
        },
    })
    .await?;
    report(&data, args.summary_json.as_deref())
}

fn merge(paths: &[std::path::PathBuf], out: Option<&Path>) -> anyhow::Result<i32> {
    let mut shards = Vec::new();
    for p in paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let doc: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        let data: RunData =
            serde_json::from_value(doc.get("floodgate").cloned().unwrap_or_default())
                .with_context(|| format!("{} is not a floodgate-loadtest summary", p.display()))?;
        shards.push(data);
    }
    report(&RunData::merge(shards)?, out)
}

/// Prints the summary, writes the JSON, and turns the verdict into an exit code.
fn report(data: &RunData, json_out: Option<&Path>) -> anyhow::Result<i32> {
    let verdicts = data.verdicts()?;
    println!("{}", console::render(data, &verdicts));
    if let Some(path) = json_out {
        let doc = summary::build(data, &verdicts)?;
        // Written aside and renamed, so a merge watching the directory never reads half a file.
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, path)
            .with_context(|| format!("renaming to {}", path.display()))?;
    }
    Ok(if data.passed()? {
        0
    } else {
        EXIT_FAILED_CHECKS
    })
}
