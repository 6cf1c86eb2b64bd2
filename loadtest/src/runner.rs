//! One run from start to verdict: setup, all configured scenarios side by side, the
//! once-a-second ticker (VU gauge, progress line, `abortOnFail`), invariants, and the
//! generator's own health.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::{Target, build_client};
use crate::config::Options;
use crate::executor::{self, RunControl, ScenarioRun};
use crate::metrics::Metrics;
use crate::output::influx::{InfluxSink, write_url};
use crate::output::progress;
use crate::recorder::Recorder;
use crate::report::{GeneratorHealth, RunData};
use crate::scenarios::{self, Invariant, Scenario};
use crate::segment::Segment;
use crate::thresholds;
use crate::vu::{RunContext, Vu};

pub struct RunConfig {
    pub scenario: &'static Scenario,
    pub target: String,
    pub options: Options,
    pub segment: Segment,
    pub params: BTreeMap<String, String>,
    pub influxdb: Option<String>,
    pub progress: bool,
    pub request_timeout: Duration,
    pub hooks: LoadHooks,
}

/// Shell commands that bracket the measured load (after setup, before the invariant checks).
#[derive(Clone, Debug, Default)]
pub struct LoadHooks {
    pub start: Option<String>,
    pub end: Option<String>,
}

/// Runs one hook with `sh -c` and waits for it; a hook that fails fails the run.
fn run_hook(which: &str, command: Option<&str>) -> anyhow::Result<()> {
    let Some(command) = command else {
        return Ok(());
    };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .with_context(|| format!("--exec-at-load-{which}: cannot start sh"))?;
    if !status.success() {
        anyhow::bail!("--exec-at-load-{which} `{command}` failed: {status}");
    }
    Ok(())
}

/// CPU time this process has used, from `/proc/self/stat` (Linux; clock ticks of 10 ms).
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn context(
    target: &Target,
    recorder: Arc<Recorder>,
    params: BTreeMap<String, String>,
    timeout: Duration,
) -> Arc<RunContext> {
    Arc::new(RunContext {
        target: target.clone(),
        recorder,
        params: RwLock::new(params),
        request_timeout: timeout,
        facts: Mutex::new(Vec::new()),
    })
}

/// The measured part of a run: the recorder and context the VUs share, and what the
/// verdict needs when the load has ended.
struct Load {
    origin: Instant,
    recorder: Arc<Recorder>,
    ctx: Arc<RunContext>,
    control: Arc<RunControl>,
    /// The InfluxDB writer task, flushed once more before the run returns.
    writer: Option<tokio::task::JoinHandle<()>>,
    started_at: String,
    cpu_before: Option<Duration>,
}

pub async fn run(cfg: RunConfig) -> anyhow::Result<RunData> {
    let target = Target::parse(&cfg.target)?;
    let verdict_set = thresholds::parse_all(&cfg.options.thresholds).map_err(anyhow::Error::msg)?;
    let side = setup(&cfg, &target).await?;
    let load = start(&cfg, &target, &side)?;
    let tasks = spawn(&cfg, &load)?;
    wait(&cfg, &load, tasks, verdict_set).await?;
    let wall = load.origin.elapsed();
    let mut metrics = load.recorder.snapshot();
    metrics.duration_ms = wall.as_millis() as u64;
    let health = generator_health(&cfg, &load, &metrics, wall);
    let invariants = verify(&cfg, &side, &load.ctx, &metrics).await?;
    if let Some(w) = load.writer {
        // The writer flushes every second; give it one last tick before the process ends.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        w.abort();
    }
    Ok(RunData {
        scenario: cfg.scenario.name.to_string(),
        target: cfg.target.clone(),
        segment: cfg.segment,
        options: cfg.options.clone(),
        metrics,
        generator: vec![health],
        invariants,
        aborted: load.control.is_aborted(),
        started_at: load.started_at,
    })
}

/// The scenario's setup, on a side context: setup and invariant checks talk to the target
/// too, but outside the measured load. Returns that context with the params setup found.
async fn setup(cfg: &RunConfig, target: &Target) -> anyhow::Result<Arc<RunContext>> {
    let mut params = cfg.params.clone();
    params
        .entry("run_id".into())
        .or_insert_with(|| format!("{:08x}", rand::random::<u32>()));
    let side = context(
        target,
        Arc::new(Recorder::new(Instant::now(), None)),
        params,
        cfg.request_timeout,
    );
    if let Some(setup) = cfg.scenario.setup {
        let mut vu = Vu::new(u64::MAX / 2, side.clone(), "setup", None);
        setup(&mut vu)
            .await
            .with_context(|| format!("setup of {}", cfg.scenario.name))?;
    }
    Ok(side)
}

/// The InfluxDB sink, the start hook, and the measured context (from the clock's origin).
fn start(cfg: &RunConfig, target: &Target, side: &RunContext) -> anyhow::Result<Load> {
    let params = side
        .params
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (sink, writer) = match &cfg.influxdb {
        Some(url) => {
            let (s, h) = InfluxSink::start(build_client(), write_url(url)?);
            (Some(s), Some(h))
        }
        None => (None, None),
    };
    run_hook("start", cfg.hooks.start.as_deref())?;
    let origin = Instant::now();
    let recorder = Arc::new(Recorder::new(origin, sink));
    Ok(Load {
        origin,
        ctx: context(target, recorder.clone(), params, cfg.request_timeout),
        recorder,
        control: Arc::new(RunControl::default()),
        writer,
        started_at: chrono::Utc::now().to_rfc3339(),
        cpu_before: process_cpu(),
    })
}

/// One executor task per configured scenario, side by side.
fn spawn(cfg: &RunConfig, load: &Load) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for (i, (name, opts)) in cfg.options.scenarios.iter().enumerate() {
        let scenario = match &opts.exec {
            Some(exec) => scenarios::find(exec)
                .ok_or_else(|| anyhow::anyhow!("scenario {name}: unknown exec {exec:?}"))?,
            None => cfg.scenario,
        };
        let sr = Arc::new(ScenarioRun {
            name: name.clone(),
            options: opts.clone(),
            scenario,
            segment: cfg.segment,
            ctx: load.ctx.clone(),
            control: load.control.clone(),
            origin: load.origin,
            id_base: i as u64 * 1_000_000_000,
        });
        tasks.push(tokio::spawn(executor::run(sr)));
    }
    Ok(tasks)
}

/// Until every scenario task ends: the once-a-second ticker and Ctrl-C beside them, then
/// the end hook.
async fn wait(
    cfg: &RunConfig,
    load: &Load,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    verdict_set: Vec<thresholds::Threshold>,
) -> anyhow::Result<()> {
    let ticker = tokio::spawn(tick(
        load.recorder.clone(),
        load.control.clone(),
        verdict_set,
        cfg.options.total_duration(),
        cfg.progress,
    ));
    let ctrl_c = {
        let control = load.control.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("interrupted: stopping the run");
                control.abort();
            }
        })
    };
    for t in tasks {
        t.await.context("a scenario task failed")?;
    }
    run_hook("end", cfg.hooks.end.as_deref())?;
    ticker.abort();
    ctrl_c.abort();
    load.recorder.sample_vus();
    if cfg.progress {
        eprintln!();
    }
    Ok(())
}

/// Whether the generator itself kept up: its CPU share over the run, against its cores.
fn generator_health(
    cfg: &RunConfig,
    load: &Load,
    metrics: &Metrics,
    wall: Duration,
) -> GeneratorHealth {
    let cpu = match (load.cpu_before, process_cpu()) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64().max(1e-9),
        _ => 0.0,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    GeneratorHealth::judge(cfg.segment, metrics, cpu, cores)
}

/// The scenario's invariant checks on the side context, with the params and facts the
/// load left. Invariants only mean something once the whole load ran, i.e. on the single shard.
async fn verify(
    cfg: &RunConfig,
    side: &Arc<RunContext>,
    ctx: &RunContext,
    metrics: &Metrics,
) -> anyhow::Result<Vec<Invariant>> {
    let Some(verify) = cfg.scenario.verify else {
        return Ok(Vec::new());
    };
    if !cfg.segment.is_whole() {
        return Ok(Vec::new());
    }
    let params = ctx.params.read().unwrap_or_else(|p| p.into_inner()).clone();
    *side.params.write().unwrap_or_else(|p| p.into_inner()) = params;
    let facts = std::mem::take(&mut *ctx.facts.lock().unwrap_or_else(|p| p.into_inner()));
    *side.facts.lock().unwrap_or_else(|p| p.into_inner()) = facts;
    let mut vu = Vu::new(u64::MAX / 2 + 1, side.clone(), "verify", None);
    verify(&mut vu, metrics).await.context("invariant checks")
}

async fn tick(
    recorder: Arc<Recorder>,
    control: Arc<RunControl>,
    verdicts: Vec<thresholds::Threshold>,
    total: Duration,
    show: bool,
) {
    let every = Duration::from_secs(1);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let aborting: Vec<_> = verdicts.into_iter().filter(|t| t.abort_on_fail).collect();
    let mut last = 0;
    loop {
        interval.tick().await;
        recorder.sample_vus();
        if show {
            progress::print(&progress::line(&recorder, total, last, every));
            last = recorder
                .live
                .reqs
                .load(std::sync::atomic::Ordering::Relaxed);
        }
        let elapsed = recorder.start.elapsed();
        let due: Vec<_> = aborting
            .iter()
            .filter(|t| elapsed >= t.delay_abort_eval)
            .collect();
        if !due.is_empty() {
            let mut snap = recorder.snapshot();
            snap.duration_ms = elapsed.as_millis() as u64;
            if let Some(t) = due.iter().find(|t| !t.evaluate(&snap)) {
                tracing::warn!(threshold = %format!("{}: {}", t.key, t.source), "threshold crossed with abortOnFail: aborting");
                control.abort();
                return;
            }
        }
    }
}
