//! Command line: `list`, `run`, `merge`, `ceiling-server`. Flags follow k6's names and
//! override the scenario file, which overrides the scenario's built-in shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{Dur, Executor, Options, ScenarioOptions, ThresholdSpec};
use crate::flags::{self, ExecutorKind, Stages};
use crate::segment::Segment;
use crate::thresholds::parse_cli;

#[derive(Parser, Debug)]
#[command(
    name = "floodgate-loadtest",
    version,
    about = "k6-style load generator with honest latency",
    long_about = "k6-style load generator with honest latency: k6's executors, stages, thresholds and \
summary JSON, open-model iterations measured from their intended start, dropped iterations and \
the generator's own lag reported. `run --help` explains every option and executor.",
    after_long_help = "Examples:\n  floodgate-loadtest list\n  floodgate-loadtest run goods-list --target http://127.0.0.1:8080 --scale 0.1\n  floodgate-loadtest run --help"
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
    #[command(after_long_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Merge shard summaries (from --segment runs) into exact global figures.
    Merge {
        /// Summary JSON files written by `run --segment i/N --summary-json FILE`, one per shard.
        #[arg(required = true, value_name = "SHARD_JSON")]
        shards: Vec<PathBuf>,
        /// Also write the merged summary (k6 handleSummary shape) to this file.
        #[arg(long, value_name = "FILE")]
        summary_json: Option<PathBuf>,
    },
    /// Serve the bare JSON ceiling (no application work) for same-run comparisons.
    CeilingServer {
        /// Address to listen on (HOST:PORT).
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: String,
        /// Size of the JSON body each response carries, in bytes.
        #[arg(long, default_value_t = 200)]
        body_bytes: usize,
        /// Store the body in this Redis and read it with one GET per request: the floor of a
        /// read that asks Redis (redis://HOST:PORT).
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
    },
}

const RUN_EXAMPLES: &str = "\
Executors (k6's names; without --executor one is inferred from the flags):
  --vus N --duration D                  constant-vus
  --stages D:VUS,...                    ramping-vus
  --rate R [--time-unit U] --duration D constant-arrival-rate
  --rate R --stages D:RATE,...          ramping-arrival-rate (--rate is the start rate)
Any of --executor/--vus/--rate/--duration/--stages replaces the configured scenarios with one
named `default`. Exit codes: 0 passed, 99 a threshold or an invariant failed, 1 error, 2 usage.

Examples:
  # the report's shape at a tenth of its load
  floodgate-loadtest run goods-list --target http://127.0.0.1:8080 --scale 0.1
  # closed model: 50 looping VUs for one minute
  floodgate-loadtest run goods-detail --target http://127.0.0.1:8080 --vus 50 --duration 1m
  # open model: 200 iterations a second for 30s, 20 VUs allocated up front, at most 400
  floodgate-loadtest run goods-list --target http://127.0.0.1:8080 \\
      --executor constant-arrival-rate --rate 200 --time-unit 1s --duration 30s --vus 20 --max-vus 400
  # ramp the arrival rate 10 -> 500/s over 20s, hold 40s, fail if p95 >= 300 ms
  floodgate-loadtest run goods-list --target http://127.0.0.1:8080 --rate 10 \\
      --stages 20s:500,40s:500 --max-vus 300 --threshold 'http_req_duration: p(95)<300'
  # shard 0 of 4 (run 0/4 ... 3/4 on four machines), then merge the four summaries
  floodgate-loadtest run coupon-drop --target http://10.0.0.5:8080 --segment 0/4 --summary-json s0.json
  floodgate-loadtest merge s0.json s1.json s2.json s3.json";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Scenario name (see `list`).
    pub scenario: String,
    /// Base URL of the app, e.g. http://127.0.0.1:8080
    #[arg(long, env = "FLOODGATE_TARGET")]
    pub target: String,
    /// Scenario file: YAML with k6's `scenarios` and `thresholds` (replaces the built-in shape).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Executor of the single scenario the flags describe (default: inferred from the flags, see `run --help`).
    ///
    /// Closed-model executors run a fixed number of VUs, each starting its next iteration when
    /// the last one ends, so a slow target lowers the load. Open-model (arrival-rate)
    /// executors start iterations on a clock whatever the latency, and count an iteration as
    /// dropped when no VU is free and --max-vus is reached.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// Iterations started per --time-unit (arrival-rate executors; k6's `rate`).
    ///
    /// With --stages, the ramp's start rate unless --start-rate is given. A number above 0,
    /// fractions allowed (0.5 with --time-unit 1s = one iteration every 2 seconds).
    #[arg(long, value_name = "RATE", value_parser = flags::positive_rate)]
    pub rate: Option<f64>,
    /// Rate at the start of a ramping-arrival-rate ramp (k6's `startRate`; default --rate or 0).
    #[arg(long, value_name = "RATE", value_parser = flags::non_negative_rate)]
    pub start_rate: Option<f64>,
    /// Period that --rate, --start-rate and arrival-rate stage targets count per (k6's `timeUnit`) [default: 1s].
    ///
    /// --rate 90 --time-unit 1m is 1.5 iterations a second.
    #[arg(long, value_name = "DURATION", value_parser = flags::positive_duration)]
    pub time_unit: Option<Duration>,
    /// How long constant-vus and constant-arrival-rate run (k6's `duration`) [default: 30s].
    ///
    /// k6 durations: 500ms, 30s, 1m30s, 2h; a bare number is seconds. Ramping executors run
    /// for the sum of their --stages instead.
    #[arg(long, value_name = "DURATION", value_parser = flags::positive_duration)]
    pub duration: Option<Duration>,
    /// VUs: the looping VUs of constant-vus [default: 1], or the VUs allocated up front for
    /// arrival rates (k6's `preAllocatedVUs`) [default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub vus: Option<u64>,
    /// Most VUs an arrival-rate executor may hold (k6's `maxVUs`) [default: --vus].
    ///
    /// When every VU is busy and this many exist, a scheduled iteration is dropped and counted
    /// in `dropped_iterations`. Values below --vus are raised to --vus.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_vus: Option<u64>,
    /// Stages as DURATION:TARGET,..., e.g. 10s:100,30s:100 (k6's `stages`).
    ///
    /// Each stage moves linearly from the previous target to its own over its duration. The
    /// target is VUs for ramping-vus (starting from 0) and iterations per --time-unit for
    /// ramping-arrival-rate (starting from --start-rate).
    #[arg(long, value_name = "DURATION:TARGET,...", value_parser = flags::stages)]
    pub stages: Option<Stages>,
    /// Multiply the load (VUs, rates) of the shape; durations stay.
    ///
    /// Applies to the built-in shape or --config file, not to the flags above; --scale 1 is
    /// the report as written, 0.1 a tenth of its load.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Threshold 'metric: expression', e.g. 'http_req_duration: p(95)<2000' (repeatable).
    ///
    /// k6's syntax: aggregates avg min med max p(N) count rate value passes fails, and tag
    /// filters such as 'http_req_duration{name:order,status:201}: p(99)<300'. A crossed
    /// threshold exits with 99.
    #[arg(long = "threshold", value_name = "METRIC: EXPR")]
    pub thresholds: Vec<String>,
    /// Write the end-of-test summary as JSON (k6's handleSummary shape) to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// InfluxDB v1 URL with the database as path, e.g. http://127.0.0.1:8086/k6
    #[arg(long, value_name = "URL")]
    pub influxdb: Option<String>,
    /// Run shard i of N (0 <= i < N) of the load, for distributed runs; `merge` joins them.
    #[arg(long, value_name = "i/N", default_value = "0/1")]
    pub segment: Segment,
    /// Scenario parameter KEY=VALUE (repeatable); also FLOODGATE_PARAM_KEY in the environment.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Per-request timeout (k6 default 60s).
    #[arg(long, value_name = "DURATION", value_parser = flags::positive_duration, default_value = "60s")]
    pub timeout: Duration,
    /// No progress line on stderr (one a second by default).
    #[arg(long)]
    pub no_progress: bool,
    /// Shell command run (and waited for) after setup, just before the load starts.
    ///
    /// With --exec-at-load-end, brackets exactly the measured load, e.g. to read the target's
    /// CPU time or to start and stop a profiler; a command that fails ends the run (exit 1).
    #[arg(long, value_name = "CMD")]
    pub exec_at_load_start: Option<String>,
    /// Shell command run (and waited for) when the load has ended, before the invariant checks.
    #[arg(long, value_name = "CMD")]
    pub exec_at_load_end: Option<String>,
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
        let stages = self.stages.as_ref().map(|s| s.0.clone());
        let kind = match (
            self.executor,
            self.rate.is_some() || self.start_rate.is_some(),
            stages.is_some(),
        ) {
            (Some(kind), _, _) => kind,
            (None, true, true) => ExecutorKind::RampingArrivalRate,
            (None, true, false) => ExecutorKind::ConstantArrivalRate,
            (None, false, true) => ExecutorKind::RampingVus,
            (None, false, false) => ExecutorKind::ConstantVus,
        };
        let duration = Dur(self.duration.unwrap_or(Duration::from_secs(30)));
        let time_unit = Dur(self.time_unit.unwrap_or(Duration::from_secs(1)));
        let pre = self.vus.unwrap_or(100);
        let max_vus = self.max_vus.unwrap_or(pre).max(pre);
        let name = kind.name();
        let need_stages = || {
            stages
                .clone()
                .with_context(|| format!("--executor {name} needs --stages DURATION:TARGET,..."))
        };
        Ok(match kind {
            ExecutorKind::ConstantVus => Executor::ConstantVus {
                vus: self.vus.unwrap_or(1),
                duration,
            },
            ExecutorKind::RampingVus => Executor::RampingVus {
                start_vus: 0,
                stages: need_stages()?,
                graceful_ramp_down: Dur(Duration::from_secs(30)),
            },
            ExecutorKind::ConstantArrivalRate => Executor::ConstantArrivalRate {
                rate: self
                    .rate
                    .context("--executor constant-arrival-rate needs --rate")?,
                time_unit,
                duration,
                pre_allocated_vus: pre,
                max_vus,
            },
            ExecutorKind::RampingArrivalRate => Executor::RampingArrivalRate {
                start_rate: self.start_rate.or(self.rate).unwrap_or(0.0),
                time_unit,
                pre_allocated_vus: pre,
                max_vus,
                stages: need_stages()?,
            },
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
