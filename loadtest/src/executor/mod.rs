//! Executors: turn a scenario's k6 options into VUs and iterations. Closed-model executors
//! (`constant-vus`, `ramping-vus`) keep VUs looping; open-model ones (`*-arrival-rate`)
//! start iterations on a schedule regardless of how slow the target is.

mod closed;
mod open;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::{Executor, ScenarioOptions};
use crate::metrics::TagSet;
use crate::scenarios::Scenario;
use crate::segment::Segment;
use crate::vu::{RunContext, Vu};

/// Run-wide stop switch (`abortOnFail`, Ctrl-C).
pub struct RunControl {
    tx: watch::Sender<bool>,
    errors_logged: AtomicU64,
}

impl Default for RunControl {
    fn default() -> Self {
        RunControl {
            tx: watch::channel(false).0,
            errors_logged: AtomicU64::new(0),
        }
    }
}

impl RunControl {
    pub fn abort(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_aborted(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the run is aborted.
    pub async fn aborted(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail while we are borrowed.
        let _ = rx.wait_for(|a| *a).await;
    }

    fn log_error(&self, scenario: &str, e: &anyhow::Error) {
        // Failing iterations are usually all alike; a few lines say enough.
        if self.errors_logged.fetch_add(1, Relaxed) < 5 {
            tracing::warn!(scenario, error = %e, "iteration failed");
        }
    }
}

/// One configured scenario of a run, ready to execute.
pub struct ScenarioRun {
    pub name: String,
    pub options: ScenarioOptions,
    pub scenario: &'static Scenario,
    pub segment: Segment,
    pub ctx: Arc<RunContext>,
    pub control: Arc<RunControl>,
    /// The common time origin of all scenarios (`startTime` counts from here).
    pub origin: Instant,
    /// Offset keeping VU ids (and so their users) distinct between scenarios of one run.
    pub id_base: u64,
}

impl ScenarioRun {
    fn tags(&self) -> Option<Arc<TagSet>> {
        if self.options.tags.is_empty() {
            None
        } else {
            Some(Arc::new(self.options.tags.clone().into_iter().collect()))
        }
    }

    fn new_vu(&self, global_id: u64) -> Vu {
        Vu::new(
            self.id_base + global_id,
            self.ctx.clone(),
            &self.name,
            self.tags(),
        )
    }

    fn start(&self) -> Instant {
        self.origin + self.options.start_time.0
    }

    /// When every iteration of this scenario must have ended (k6's `gracefulStop`).
    fn hard_stop(&self) -> Instant {
        self.start() + self.options.executor.duration() + self.options.graceful_stop.0
    }
}

/// Runs one scenario to completion.
pub async fn run(sr: Arc<ScenarioRun>) {
    tokio::select! {
        _ = tokio::time::sleep_until(sr.start().into()) => {}
        _ = sr.control.aborted() => return,
    }
    match sr.options.executor.clone() {
        Executor::ConstantVus { .. } | Executor::RampingVus { .. } => closed::run(&sr).await,
        Executor::ConstantArrivalRate { .. } | Executor::RampingArrivalRate { .. } => {
            open::run(&sr).await
        }
    }
}

/// Runs one iteration of `vu`, due at `intended`, cut off at `deadline` or on abort.
async fn iterate(sr: &ScenarioRun, vu: &mut Vu, intended: Instant, deadline: Instant) {
    vu.begin_iteration(intended, Some(deadline));
    let outcome = tokio::select! {
        r = tokio::time::timeout_at(deadline.into(), (sr.scenario.iteration)(vu)) => r.ok(),
        _ = sr.control.aborted() => None,
    };
    let done = Instant::now();
    match outcome {
        Some(Ok(())) => sr.ctx.recorder.iteration(vu.id, intended, done, false),
        Some(Err(e)) => {
            // Like a k6 exception: the iteration ends early but still counts.
            sr.control.log_error(&sr.name, &e);
            sr.ctx.recorder.iteration(vu.id, intended, done, false);
        }
        None => sr.ctx.recorder.iteration(vu.id, intended, done, true),
    }
    vu.iteration += 1;
}

fn secs(t: f64) -> Duration {
    Duration::from_secs_f64(t.max(0.0))
}
