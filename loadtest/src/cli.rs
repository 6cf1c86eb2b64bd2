//! Command line: `list`, `run`, `merge`, `ceiling-server`. Flags follow k6's names and
//! override the scenario file, which overrides the scenario's built-in shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{Dur, Executor, Options, ScenarioOptions, ThresholdSpec, parse_stages};
use crate::duration::parse_duration;
use crate::segment::Segment;
use crate::thresholds::parse_cli;

#[derive(Parser, Debug)]
#[command(
    name = "floodgate-loadtest",
    version,
    about = "k6-style load generator with honest latency"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List scenarios with one-line descriptions.
    List,
    /// Run a scenario against a target.
    Run(Box<RunArgs>),
    /// Merge shard summaries (from --segment runs) into exact global figures.
    Merge {
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[arg(long)]
        summary_json: Option<PathBuf>,
    },
    /// Serve the bare JSON ceiling (no application work) for same-run comparisons.
    CeilingServer {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: String,
        #[arg(long, default_value_t = 200)]
        body_bytes: usize,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario name (see `list`).
    pub scenario: String,
    /// Base URL, e.g. http://127.0.0.1:8080
    #[arg(long, env = "FLOODGATE_TARGET")]
    pub target: String,
    /// Scenario file (YAML with k6's `scenarios` and `thresholds`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub executor: Option<String>,
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long)]
    pub start_rate: Option<f64>,
    #[arg(long, value_parser = parse_duration)]
    pub time_unit: Option<Duration>,
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long)]
    pub vus: Option<u64>,
    #[arg(long)]
    pub max_vus: Option<u64>,
    /// Stages as DURATION:TARGET,… e.g. 10s:100,30s:100
    #[arg(long)]
    pub stages: Option<String>,
    /// Multiply the load (VUs, rates) of the shape; durations stay.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// 'metric: expression', e.g. 'http_req_duration: p(95)<2000' (repeatable).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// InfluxDB v1 URL with the database as path, e.g. http://127.0.0.1:8086/k6
    #[arg(long)]
    pub influxdb: Option<String>,
    #[arg(long, default_value = "0/1")]
    pub segment: Segment,
    /// Scenario parameter KEY=VALUE (repeatable); also FLOODGATE_PARAM_KEY in the environment.
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Per-request timeout (k6 default 60s).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
    #[arg(long)]
    pub no_progress: bool,
}

impl RunArgs {
    fn overrides_executor(&self) -> bool {
        self.executor.is_some()
            || self.rate.is_some()
            || self.duration.is_some()
            || self.vus.is_some()
            || self.stages.is_some()
    }

    /// The executor the flags describe, inferred as k6 does when `--executor` is absent.
    pub fn executor_from_flags(&self) -> anyhow::Result<Executor> {
        let stages = self
            .stages
            .as_deref()
            .map(parse_stages)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let name = match (
            &self.executor,
            self.rate.is_some() || self.start_rate.is_some(),
            stages.is_some(),
        ) {
            (Some(n), _, _) => n.clone(),
            (None, true, true) => "ramping-arrival-rate".into(),
            (None, true, false) => "constant-arrival-rate".into(),
            (None, false, true) => "ramping-vus".into(),
            (None, false, false) => "constant-vus".into(),
        };
        let duration = Dur(self.duration.unwrap_or(Duration::from_secs(30)));
        let time_unit = Dur(self.time_unit.unwrap_or(Duration::from_secs(1)));
        let pre = self.vus.unwrap_or(100);
        let max_vus = self.max_vus.unwrap_or(pre).max(pre);
        let need_stages = || {
            stages
                .clone()
                .with_context(|| format!("{name} needs --stages"))
        };
        Ok(match name.as_str() {
            "constant-vus" => Executor::ConstantVus {
                vus: self.vus.unwrap_or(1),
                duration,
            },
            "ramping-vus" => Executor::RampingVus {
                start_vus: 0,
                stages: need_stages()?,
                graceful_ramp_down: Dur(Duration::from_secs(30)),
            },
            "constant-arrival-rate" => Executor::ConstantArrivalRate {
                rate: self.rate.context("constant-arrival-rate needs --rate")?,
                time_unit,
                duration,
                pre_allocated_vus: pre,
                max_vus,
            },
            "ramping-arrival-rate" => Executor::RampingArrivalRate {
                start_rate: self.start_rate.or(self.rate).unwrap_or(0.0),
                time_unit,
                pre_allocated_vus: pre,
                max_vus,
                stages: need_stages()?,
            },
            other => bail!("unknown executor {other:?}"),
        })
    }

    /// Built-in shape ← file ← `--scale` ← flags, in that order.
    pub fn options(&self, builtin: Options) -> anyhow::Result<Options> {
        let mut o = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Options::from_yaml(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => builtin,
        };
        if o.scenarios.is_empty() && !self.overrides_executor() {
            bail!(
                "no scenarios configured: give the file a `scenarios:` block or pass --vus/--rate/--stages"
            );
        }
        if self.scale <= 0.0 || !self.scale.is_finite() {
            bail!("--scale must be positive");
        }
        o.scale(self.scale);
        if self.overrides_executor() {
            o.scenarios = BTreeMap::from([(
                "default".to_string(),
                ScenarioOptions::new(self.executor_from_flags()?),
            )]);
        }
        for t in &self.thresholds {
            let (key, expr) = parse_cli(t).map_err(anyhow::Error::msg)?;
            o.thresholds.insert(key, vec![ThresholdSpec::Expr(expr)]);
        }
        Ok(o)
    }

    /// `--param` pairs over `FLOODGATE_PARAM_*` environment variables.
    pub fn params(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out: BTreeMap<String, String> = std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("FLOODGATE_PARAM_")
                    .map(|k| (k.to_ascii_lowercase(), v))
            })
            .collect();
        for p in &self.params {
            let (k, v) = p
                .split_once('=')
                .with_context(|| format!("--param {p:?} is not KEY=VALUE"))?;
            out.insert(k.trim().to_string(), v.to_string());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> RunArgs {
        let mut argv = vec![
            "floodgate-loadtest",
            "run",
            "goods-list",
            "--target",
            "http://127.0.0.1:1",
        ];
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            Command::Run(a) => *a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn flags_override_the_shape_and_scale_applies_to_the_shape() {
        let builtin = crate::scenarios::find("goods-detail")
            .map(|s| (s.options)())
            .expect("scenario");
        let o = args(&["--scale", "0.01"])
            .options(builtin.clone())
            .expect("options");
        assert_eq!(o.scenarios["load_test"].executor.max_vus(), 30);
        let o = args(&[
            "--rate",
            "50",
            "--duration",
            "5s",
            "--threshold",
            "http_req_failed: rate<0.01",
        ])
        .options(builtin)
        .expect("options");
        assert_eq!(o.scenarios.len(), 1);
        assert!(
            matches!(o.scenarios["default"].executor, Executor::ConstantArrivalRate { rate, .. } if rate == 50.0)
        );
        assert_eq!(
            o.thresholds["http_req_failed"],
            vec![ThresholdSpec::Expr("rate<0.01".into())]
        );
        let e = args(&["--stages", "10s:100,30s:100"])
            .executor_from_flags()
            .expect("executor");
        assert_eq!(e.name(), "ramping-vus");
        assert!(
            args(&["--executor", "ramping-arrival-rate"])
                .executor_from_flags()
                .is_err()
        );
        assert_eq!(
            args(&["--param", "goods_id=7"]).params().expect("params")["goods_id"],
            "7"
        );
    }
}
