//! The replica decision: a pure function of the policy, the signals, the current replica count
//! and the recent history — no I/O, no clock, no Kubernetes types — so every rule of
//! docs/operator.md "Decide replicas" is property-tested here rather than discovered in a
//! cluster.
//!
//! Vocabulary and order follow HPA v2 (per-signal recommendations, per-direction tolerance,
//! stabilization windows, step policies with `selectPolicy`, min/max clamp applied last), KEDA
//! (`fallback` after `failureThreshold` failed reads, with its four behaviours) and Knative's
//! KPA (stable and panic windows averaging the signals; panic follows a burst at once and
//! never shrinks).

mod decide;
mod history;
mod policy;
#[cfg(test)]
mod replay;
#[cfg(test)]
mod replay_drop;
mod steps;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_end;
#[cfg(test)]
mod tests_rules;
pub mod triggers;

pub use decide::{decide, step_down};
pub use history::History;
pub use policy::{Fallback, Policy, Rules, Select, StepKind, StepPolicy, spec_problems};

/// Milliseconds since the Unix epoch; the caller's clock, passed in so tests control time.
pub type Millis = u64;

/// Replicas for a fractional recommendation: rounded up, 0 for NaN or ≤ 0, capped at u32::MAX.
fn ceil_u32(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x.ceil() as u32
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

/// Which rule shaped the final number, for the status reason and the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    None,
    UpStabilization,
    DownStabilization,
    Panic,
    UpStep,
    DownStep,
    /// `selectPolicy: Disabled` for the direction the recommendation points.
    Disabled,
    /// Panic: the scale-up followed the panic window's recommendation at once.
    PanicUp,
    Min,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub desired: u32,
    /// The largest per-signal recommendation of the stable window (or the fallback), or the
    /// panic window's when that is larger while panicking: what the stabilization windows
    /// remember.
    pub recommendation: u32,
    pub limit: Limit,
    pub panic: bool,
    pub fallback: bool,
    /// Human-readable, e.g. "queue depth 91000 / 2000 per replica = 46; limited by scale-up step".
    pub reason: String,
}
