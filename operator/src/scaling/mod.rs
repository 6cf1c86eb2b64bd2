//! The replica decision: a pure function of the policy, the signals, the current replica count
//! and the recent history — no I/O, no clock, no Kubernetes types — so every rule of
//! OPERATOR.md "Decide replicas" is property-tested here rather than discovered in a cluster.
//!
//! Vocabulary and order follow HPA v2 (per-signal recommendations, tolerance, stabilization
//! windows, step policies with `selectPolicy: Max`, min/max clamp applied last), KEDA
//! (fallback replicas when metrics fail) and Knative (panic mode: never shrink during a burst).

mod decide;
#[cfg(test)]
mod replay;
#[cfg(test)]
mod tests;
pub mod triggers;

use std::collections::VecDeque;

use floodgate_crds::v1alpha1::ScalingSpec;

pub use decide::{decide, step_down};

/// Milliseconds since the Unix epoch; the caller's clock, passed in so tests control time.
pub type Millis = u64;

/// The limits on moving in one direction within a period (HPA `behavior.scaleUp/Down`).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub stabilization_ms: u64,
    pub pods: u32,
    pub percent: u32,
    pub period_ms: u64,
}

/// A `ScalingSpec` in plain numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub min: u32,
    pub max: u32,
    pub waiting_per_replica: u64,
    pub p95_target_ms: f64,
    pub tolerance: f64,
    pub up: Rules,
    pub down: Rules,
    pub panic_window_ms: u64,
    pub panic_threshold: f64,
    /// Replicas when every signal is unavailable; `None` means "stay where you are".
    pub fallback: Option<u32>,
    /// Most replicas latency may ask for beyond what the queue justifies.
    pub latency_max: u32,
}

impl Policy {
    pub fn from_spec(s: &ScalingSpec) -> Self {
        let n = |v: i32| u32::try_from(v).unwrap_or(0);
        let rules = |r: &floodgate_crds::v1alpha1::ScalingRules| Rules {
            stabilization_ms: r.stabilization.as_millis(),
            pods: n(r.max_step.pods),
            percent: n(r.max_step.percent),
            period_ms: r.max_step.period.as_millis(),
        };
        let min = n(s.min_replicas);
        let max = n(s.max_replicas).max(min);
        Self {
            min,
            max,
            waiting_per_replica: u64::try_from(s.waiting_per_replica).unwrap_or(1).max(1),
            p95_target_ms: s.p95_target.as_millis().max(1) as f64,
            tolerance: s.tolerance.clamp(0.0, 1.0),
            up: rules(&s.scale_up),
            down: rules(&s.scale_down),
            panic_window_ms: s.panic.window.as_millis(),
            panic_threshold: s.panic.threshold,
            fallback: s.fallback_replicas.map(n),
            latency_max: s
                .latency_max_replicas
                .map(n)
                .unwrap_or(min.saturating_mul(2))
                .clamp(min, max),
        }
    }

    /// Knative's ratio: panic ends after a stable window of ten panic windows without a burst.
    pub fn panic_hold_ms(&self) -> u64 {
        self.panic_window_ms.saturating_mul(10)
    }
}

/// The app's latency as observed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Latency {
    /// Could not be read (Prometheus or every pod scrape failed).
    Unavailable,
    /// Read, but no request completed in the window: nothing to say about latency.
    Idle,
    /// p95 in milliseconds.
    P95Ms(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Signals {
    /// Users waiting across the campaign's queues; `None` when it could not be read.
    pub waiting: Option<u64>,
    pub latency: Latency,
    /// The Campaign's `scaling.triggers`, read (see [`triggers`]).
    pub triggers: triggers::TriggerReadings,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Input {
    pub now: Millis,
    /// Replicas of the scale subresource right now.
    pub current: u32,
    pub signals: Signals,
}

/// What the decision remembers between calls (kept in memory by the caller, like HPA's
/// controller does; a restart forgets it and is merely conservative for one window).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Raw recommendations with their time, for the stabilization windows.
    recommendations: VecDeque<(Millis, u32)>,
    /// Changes this decision made (time, signed delta), for the step policies.
    changes: VecDeque<(Millis, i64)>,
    /// Last time a burst was seen; panic lasts `panic_hold_ms` after it.
    last_burst: Option<Millis>,
}

impl History {
    /// Records that the caller applied `from → to` at `now` (only applied changes count
    /// against the step policies).
    pub fn record_change(&mut self, now: Millis, from: u32, to: u32) {
        if from != to {
            self.changes
                .push_back((now, i64::from(to) - i64::from(from)));
        }
    }
}

/// Which rule shaped the final number, for the status reason and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    None,
    UpStabilization,
    DownStabilization,
    Panic,
    UpStep,
    DownStep,
    Min,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub desired: u32,
    /// The largest per-signal recommendation (or the fallback) before any limit.
    pub recommendation: u32,
    pub limit: Limit,
    pub panic: bool,
    pub fallback: bool,
    /// Human-readable, e.g. "queue depth 91000 / 2000 per replica = 46; limited by scale-up step".
    pub reason: String,
}
