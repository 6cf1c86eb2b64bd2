//! The live circuit breakers around PostgreSQL and Redis, and the guard every chokepoint
//! uses to ask one before calling its dependency.
//!
//! Each breaker follows its part of the runtime config: every call compares the config
//! version it last applied with the one in force (one atomic load) and reconfigures the
//! machine when they differ, so an operator's change is live within the reader's 2-second
//! poll. Only infrastructure failures count: a guarded call that fails with a 503 (pool
//! timeout, connection error, its own deadline) is a failure; any other answer, including
//! a business 4xx, shows the dependency is up.
//!
//! Each breaker also carries its dependency's bulkhead: a fixed number of guarded calls may be
//! in flight at once (waiting for a pooled connection included); one more is refused at once
//! with 503 `bulkhead-full`. So a stalled dependency can hold at most its bulkhead's share of
//! the process's in-flight requests, and the rest keep being served.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use floodgate_crds::runtime::{BreakerSettings, CircuitBreakers};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{
    breaker::{Admission, Config, Machine, Outcome, State, Transition},
    metrics::{CircuitCallLabels, CircuitLabels, Metrics},
    runtime_config::RuntimeConfigHandle,
};
use crate::error::{ApiError, ApiResult, Dependency};

/// The `kind` of the 503 a refused call gets; never counted as a failure itself.
pub const CIRCUIT_OPEN: &str = "circuit-open";
/// The `kind` of the 503 for a guarded call that outlived its deadline.
pub const DEPENDENCY_TIMEOUT: &str = "dependency-timeout";
/// The `kind` of the 503 for a call refused because its dependency's bulkhead is full.
pub const BULKHEAD_FULL: &str = "bulkhead-full";

/// The `outcome` label of `floodgate_circuit_calls_total`.
#[derive(Clone, Copy)]
enum Counted {
    Failure,
    Slow,
    Success,
    Rejected,
}

impl Counted {
    const ALL: [Counted; 4] = [
        Counted::Failure,
        Counted::Slow,
        Counted::Success,
        Counted::Rejected,
    ];

    fn label(self) -> &'static str {
        match self {
            Counted::Failure => "failure",
            Counted::Slow => "slow",
            Counted::Success => "success",
            Counted::Rejected => "rejected",
        }
    }
}

/// How the calls to one dependency are bounded.
#[derive(Clone, Copy, Debug)]
pub struct CallLimits {
    /// Deadline of one guarded call, so a stalled dependency cannot hold a request longer.
    pub timeout: Duration,
    /// Guarded calls in flight at once.
    pub bulkhead: usize,
}

pub struct Breaker {
    dependency: &'static str,
    guards: Dependency,
    pick: fn(&CircuitBreakers) -> &BreakerSettings,
    machine: Mutex<Machine>,
    /// Runtime-config version applied to `machine` (u64::MAX: none yet).
    version: AtomicU64,
    runtime: RuntimeConfigHandle,
    /// Deadline of one guarded call, so a stalled dependency cannot hold a request longer.
    timeout: Duration,
    bulkhead: Semaphore,
    in_flight: Gauge,
    bulkhead_rejected: Counter,
    /// `floodgate_circuit_state` of this dependency, held so a call does not look it up.
    state_gauge: Gauge,
    /// `floodgate_circuit_calls_total` by outcome, in `Counted::ALL` order; all four series
    /// exist from the start, so a rate over them starts at 0 rather than at the first call.
    calls: [Counter; 4],
}

/// Both breakers of the process.
pub struct Breakers {
    pub postgres: Breaker,
    pub redis: Breaker,
}

impl Breakers {
    /// Applies new runtime configs and refreshes the state gauges every second, so a forced
    /// state shows in the metrics within the reader's poll even when no call arrives.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            self.postgres.state();
            self.redis.state();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    pub fn new(
        runtime: &RuntimeConfigHandle,
        metrics: &Arc<Metrics>,
        postgres: CallLimits,
        redis: CallLimits,
    ) -> Self {
        Self {
            postgres: Breaker::new(
                Dependency::Postgres,
                |c| &c.postgres,
                runtime,
                metrics,
                postgres,
            ),
            redis: Breaker::new(Dependency::Redis, |c| &c.redis, runtime, metrics, redis),
        }
    }
}

/// Did `dependency` itself fail (unreachable, pool exhausted, statement timeout)? A refusal
/// by a breaker or a bulkhead is not a failure, nor is another dependency's error met inside
/// the call (a Redis error during a database unit), nor any business answer.
pub fn is_failure_of(e: &ApiError, dependency: Dependency) -> bool {
    e.status() == StatusCode::SERVICE_UNAVAILABLE && e.failed_dependency() == Some(dependency)
}

/// May a cached copy stand in for this answer? Yes when a dependency could not answer
/// (failed, timed out, or was refused by its breaker or bulkhead), never for a business answer.
pub fn is_unavailable(e: &ApiError) -> bool {
    e.status() == StatusCode::SERVICE_UNAVAILABLE
}

fn bulkhead_full(dependency: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        BULKHEAD_FULL,
        format!("too many requests are waiting for {dependency}; retry shortly"),
    )
    .retry_after(1)
}

/// A 503 that tells the client when to come back (whole seconds, at least 1).
pub fn circuit_open(dependency: &str, retry_after: Duration) -> ApiError {
    let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        CIRCUIT_OPEN,
        format!("{dependency} is unavailable (circuit open); retry later"),
    )
    .retry_after(secs)
}

impl Breaker {
    fn new(
        guards: Dependency,
        pick: fn(&CircuitBreakers) -> &BreakerSettings,
        runtime: &RuntimeConfigHandle,
        metrics: &Arc<Metrics>,
        limits: CallLimits,
    ) -> Self {
        let cfg = runtime.get();
        let dependency = guards.as_str();
        let labels = CircuitLabels { dependency };
        let b = Self {
            dependency,
            guards,
            pick,
            machine: Mutex::new(Machine::new(
                pick(&cfg.circuit_breakers).into(),
                Instant::now(),
            )),
            version: AtomicU64::new(cfg.version),
            runtime: runtime.clone(),
            timeout: limits.timeout,
            bulkhead: Semaphore::new(limits.bulkhead),
            in_flight: metrics.bulkhead_in_flight.get_or_create(&labels).clone(),
            bulkhead_rejected: metrics.bulkhead_rejected.get_or_create(&labels).clone(),
            state_gauge: metrics.circuit_state.get_or_create(&labels).clone(),
            calls: Counted::ALL.map(|outcome| {
                let labels = CircuitCallLabels {
                    dependency,
                    outcome: outcome.label(),
                };
                metrics.circuit_calls.get_or_create(&labels).clone()
            }),
        };
        b.publish(b.lock().state());
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Machine> {
        // the machine has no invariant a panic elsewhere could break mid-update
        self.machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a new runtime-config version, if there is one.
    fn sync(&self) {
        let cfg = self.runtime.get();
        if self.version.load(Ordering::Relaxed) == cfg.version {
            return;
        }
        let new: Config = (self.pick)(&cfg.circuit_breakers).into();
        let mut m = self.lock();
        if self.version.swap(cfg.version, Ordering::Relaxed) == cfg.version {
            return;
        }
        if *m.config() != new {
            tracing::info!(
                dependency = self.dependency,
                version = cfg.version,
                "circuit breaker reconfigured"
            );
        }
        let t = m.reconfigure(new, Instant::now());
        self.after(t, &m);
    }

    fn after(&self, t: Option<Transition>, m: &Machine) {
        if let Some(t) = t {
            tracing::warn!(
                dependency = self.dependency,
                from = t.from.as_str(),
                to = t.to.as_str(),
                "circuit breaker transition"
            );
        }
        self.publish(m.state());
    }

    fn publish(&self, state: State) {
        self.state_gauge.set(state as i64);
    }

    fn count(&self, outcome: Counted, calls: u32) {
        self.calls[outcome as usize].inc_by(u64::from(calls));
    }

    pub fn state(&self) -> State {
        self.sync();
        self.lock().state()
    }

    /// How long calls will still be refused, if the breaker is open (for the fast-fail
    /// middleware; it takes no half-open trial slot).
    pub fn refusing_for(&self) -> Option<Duration> {
        self.sync();
        self.lock().refusing_for(Instant::now())
    }

    /// Asks to make one call; refused calls get a `circuit-open` 503 with `Retry-After`, or a
    /// `bulkhead-full` one when the dependency already has its share of calls in flight.
    pub fn acquire(&self) -> ApiResult<Permit<'_>> {
        self.acquire_for(1)
    }

    fn acquire_for(&self, calls: u32) -> ApiResult<Permit<'_>> {
        self.sync();
        let mut m = self.lock();
        let (admission, t) = m.acquire(Instant::now());
        self.after(t, &m);
        drop(m);
        match admission {
            Admission::Allowed { trial } => {
                let mut permit = Permit {
                    breaker: self,
                    trial,
                    started: Instant::now(),
                    done: false,
                    slot: None,
                    calls,
                };
                match self.bulkhead.try_acquire() {
                    Ok(slot) => {
                        self.in_flight.inc();
                        permit.slot = Some(slot);
                        Ok(permit)
                    }
                    // dropping the unreported permit hands a half-open trial slot back
                    Err(_) => {
                        self.bulkhead_rejected.inc();
                        Err(bulkhead_full(self.dependency))
                    }
                }
            }
            Admission::Rejected { retry_after } => {
                self.count(Counted::Rejected, calls);
                Err(circuit_open(self.dependency, retry_after))
            }
        }
    }

    /// Runs `call` under the breaker and the dependency's deadline; records its outcome.
    pub async fn run<T>(&self, call: impl Future<Output = ApiResult<T>>) -> ApiResult<T> {
        self.run_timed(async |_| call.await).await
    }

    /// Like [`Self::run`], but `call` may restart the slow-call clock once it holds a pooled
    /// connection: waiting in the process's own pool queue is local contention, bounded by
    /// the acquire timeout (and a failure when that passes), not the dependency's latency.
    pub async fn run_timed<T>(
        &self,
        call: impl AsyncFnOnce(&Clock) -> ApiResult<T>,
    ) -> ApiResult<T> {
        self.run_timed_for(1, call).await
    }

    /// [`Self::run_timed`] for one call made on behalf of `calls` requests (a group-commit
    /// batch): its outcome counts once per request, so window sizes, minimum calls and rates
    /// keep meaning requests whether or not they were batched.
    pub async fn run_timed_for<T>(
        &self,
        calls: u32,
        call: impl AsyncFnOnce(&Clock) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut permit = self.acquire_for(calls.max(1))?;
        let clock = Clock(Mutex::new(permit.started));
        let outcome = tokio::time::timeout(self.timeout, call(&clock)).await;
        permit.started = *clock
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(result) => {
                permit.finish(
                    if result
                        .as_ref()
                        .is_err_and(|e| is_failure_of(e, self.guards))
                    {
                        Outcome::Failure
                    } else {
                        Outcome::Success
                    },
                );
                result
            }
            Err(_) => {
                permit.finish(Outcome::Failure);
                tracing::warn!(
                    dependency = self.dependency,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "dependency call timed out"
                );
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    DEPENDENCY_TIMEOUT,
                    format!("{} did not answer in time; retry shortly", self.dependency),
                )
                .retry_after(1)
                .failure_of(self.guards))
            }
        }
    }
}

/// When a guarded call's dependency time started (see [`Breaker::run_timed`]).
pub struct Clock(Mutex<Instant>);

impl Clock {
    pub fn restart(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }
}

/// One admitted call. Report it with [`Permit::finish`]; dropped unreported (the request was
/// abandoned), it counts as a failure if it was already slow, else it just frees its slot.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    started: Instant,
    done: bool,
    /// The bulkhead slot, held until the call is reported.
    slot: Option<SemaphorePermit<'a>>,
    /// Requests this call stands for (see [`Breaker::run_timed_for`]).
    calls: u32,
}

impl Permit<'_> {
    pub fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.report(Some(outcome));
    }

    fn report(&mut self, outcome: Option<Outcome>) {
        let b = self.breaker;
        if self.slot.take().is_some() {
            b.in_flight.dec();
        }
        let took = self.started.elapsed();
        let mut m = b.lock();
        let outcome =
            outcome.or((took >= m.config().slow_call_duration).then_some(Outcome::Failure));
        let Some(outcome) = outcome else {
            m.release(self.trial);
            return;
        };
        let slow = took >= m.config().slow_call_duration;
        let now = Instant::now();
        let mut t = None;
        for _ in 0..self.calls {
            // the first transition wins; later records land in the phase it started
            t = t.or(m.record(now, self.trial, outcome, took));
        }
        b.after(t, &m);
        drop(m);
        b.count(
            match (outcome, slow) {
                (Outcome::Failure, _) => Counted::Failure,
                (Outcome::Success, true) => Counted::Slow,
                (Outcome::Success, false) => Counted::Success,
            },
            self.calls,
        );
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.report(None);
        }
    }
}
