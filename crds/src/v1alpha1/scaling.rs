//! `Campaign.spec.scaling`: how the target is scaled, in the vocabulary of HPA v2 `behavior`
//! (step policies, `selectPolicy`, stabilization, per-direction tolerance), Knative's KPA
//! (stable and panic windows) and KEDA (`fallback`). The pure decision that reads it is
//! `operator/src/scaling/`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::campaign::MetricsSpec;
use super::triggers::TriggerSpec;
use crate::duration::Dur;

/// Autoscaling in the vocabulary of HPA v2 behaviour, with KEDA's and Knative's lessons:
/// queue depth and latency signals, step limits, stabilization, panic mode and a fallback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas",
     "message": "minReplicas must not exceed maxReplicas"},
    {"rule": "!has(self.fallbackReplicas) || (self.fallbackReplicas >= self.minReplicas && self.fallbackReplicas <= self.maxReplicas)",
     "message": "fallbackReplicas must lie within [minReplicas, maxReplicas]"},
    {"rule": "!has(self.fallbackReplicas) || !has(self.fallback)",
     "message": "fallbackReplicas and fallback are two spellings of the fallback: use one"},
    {"rule": "!has(self.fallback) || (self.fallback.replicas >= self.minReplicas && self.fallback.replicas <= self.maxReplicas)",
     "message": "fallback.replicas must lie within [minReplicas, maxReplicas]"},
    {"rule": "!has(self.latencyMaxReplicas) || (self.latencyMaxReplicas >= self.minReplicas && self.latencyMaxReplicas <= self.maxReplicas)",
     "message": "latencyMaxReplicas must lie within [minReplicas, maxReplicas]"},
    {"rule": "!has(self.triggers) || self.triggers.all(t, self.triggers.exists_one(u, u.name == t.name))",
     "message": "trigger names must be unique"}
]))]
pub struct ScalingSpec {
    /// Fewest replicas while the campaign is Prewarming or Active.
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas the campaign may ask for.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Target queue depth per replica: waiting users / this = recommended replicas.
    #[serde(default = "default_waiting_per_replica")]
    #[schemars(range(min = 1))]
    pub waiting_per_replica: i64,
    /// Target p95 latency of the app's HTTP requests.
    #[serde(default = "default_p95_target")]
    pub p95_target: Dur,
    /// Relative band around each target inside which no change is made (0.1 = ±10 %); the
    /// default of scaleUp.tolerance and scaleDown.tolerance.
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: f64,
    /// Limits on growing the Deployment (HPA `behavior.scaleUp`).
    #[serde(default = "default_scale_up")]
    pub scale_up: ScalingRules,
    /// Limits on shrinking the Deployment (HPA `behavior.scaleDown`).
    #[serde(default = "default_scale_down")]
    pub scale_down: ScalingRules,
    /// Knative KPA windows: the stable window recommends, the panic window detects bursts.
    #[serde(default)]
    pub panic: PanicSpec,
    /// Legacy spelling of `fallback: {replicas: N, behavior: static}` (failureThreshold 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_replicas: Option<i32>,
    /// What to run while every signal is unavailable (KEDA `fallback`); without it (and
    /// without fallbackReplicas) the current count is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackSpec>,
    /// Most replicas latency alone may ask for while the queue is empty (slowness with an
    /// empty queue usually means a saturated database, where more pods make it worse);
    /// defaults to twice minReplicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max_replicas: Option<i32>,
    /// Where the signals come from; by default the app pods' /metrics are scraped.
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Extra signals (KEDA scalers): PromQL queries and Redis Stream backlogs, each with a
    /// target value per replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub triggers: Vec<TriggerSpec>,
}

fn default_waiting_per_replica() -> i64 {
    2000
}
fn default_p95_target() -> Dur {
    Dur::from_millis(250)
}
fn default_tolerance() -> f64 {
    0.1
}

/// scaleUp's defaults: no stabilization, at most max(8 pods, 100 %) per 15 s.
pub fn default_scale_up() -> ScalingRules {
    ScalingRules::legacy(Dur::from_secs(0), 8, 100, Dur::from_secs(15))
}

/// scaleDown's defaults: a 300 s window, at most max(2 pods, 20 %) per 60 s.
pub fn default_scale_down() -> ScalingRules {
    ScalingRules::legacy(Dur::from_secs(300), 2, 20, Dur::from_secs(60))
}

/// One direction of HPA v2 `behavior`. The step limits are either the legacy `maxStep` or
/// HPA's `policies` (not both); the window either `stabilization` or HPA's
/// `stabilizationWindowSeconds` (not both). What is left out takes the direction's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.maxStep) || !has(self.policies)",
     "message": "maxStep and policies are two spellings of the step limits: use one"},
    {"rule": "!has(self.stabilization) || !has(self.stabilizationWindowSeconds)",
     "message": "stabilization and stabilizationWindowSeconds are two spellings of the window: use one"}
]))]
pub struct ScalingRules {
    /// Recommendations of this long a window are considered; for scale-down the highest one
    /// wins, so a brief dip does not shrink the Deployment (scaleUp 0s, scaleDown 300s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization: Option<Dur>,
    /// HPA's spelling of `stabilization`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// The largest change allowed within one period: the larger of `pods` and `percent`
    /// (two policies sharing `period`, selectPolicy Max unless said otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<StepLimit>,
    /// HPA step policies, each limiting the change within its own period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub policies: Option<Vec<ScalingPolicy>>,
    /// Which policy wins: Max (the largest change, default), Min (the smallest) or Disabled
    /// (no change in this direction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// This direction's tolerance band (HPA 1.33 `behavior.*.tolerance`); defaults to
    /// scaling.tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: Option<f64>,
}

impl ScalingRules {
    fn legacy(stabilization: Dur, pods: i32, percent: i32, period: Dur) -> Self {
        Self {
            stabilization: Some(stabilization),
            max_step: Some(StepLimit {
                pods,
                percent,
                period,
            }),
            ..Self::default()
        }
    }
}

/// Within any `period` the replica count may change by at most the larger of `pods` and
/// `percent` % of the count at the start of the period (HPA's `selectPolicy: Max`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepLimit {
    /// Absolute number of pods per period.
    #[schemars(range(min = 1, max = 1000))]
    pub pods: i32,
    /// Percentage of the current replica count per period.
    #[schemars(range(min = 1, max = 1000))]
    pub percent: i32,
    /// Length of the period the limits apply to.
    pub period: Dur,
}

/// One HPA step policy: at most `value` pods, or `value` % of the count at the period's
/// start, within any `periodSeconds`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// Pods or Percent.
    #[serde(rename = "type")]
    pub type_: PolicyType,
    /// Pods, or a percentage of the replicas at the period's start.
    #[schemars(range(min = 1, max = 1000))]
    pub value: i32,
    /// Length of this policy's period (HPA: 1 to 1800).
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// Knative KPA's two windows. Each averages the signals over its length; the stable
/// window's average recommends, and a panic-window recommendation of `threshold` × the
/// current replicas is a burst: panic scales up to it at once and never scales down until a
/// stable window passes without a burst.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PanicSpec {
    /// Short window over which a burst is detected (KPA panic window).
    #[serde(default = "default_panic_window")]
    pub window: Dur,
    /// Window the recommendation averages over, and how long panic lasts after the last
    /// burst (KPA stable window); defaults to 10 × window (KPA's panic window is 10 % of the
    /// stable window), 60s with the default window, which is also how long panic used to last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_window: Option<Dur>,
    /// Enter panic when the recommendation over the window reaches this multiple of the
    /// current replicas.
    #[serde(default = "default_panic_threshold")]
    #[schemars(range(min = 1.1, max = 100.0))]
    pub threshold: f64,
}

fn default_panic_window() -> Dur {
    Dur::from_secs(6)
}
fn default_panic_threshold() -> f64 {
    2.0
}

impl PanicSpec {
    /// The stable window, defaulted.
    pub fn stable_window_or_default(&self) -> Dur {
        self.stable_window
            .unwrap_or(Dur::from_millis(self.window.as_millis().saturating_mul(10)))
    }
}

impl Default for PanicSpec {
    fn default() -> Self {
        Self {
            window: default_panic_window(),
            stable_window: None,
            threshold: default_panic_threshold(),
        }
    }
}

/// KEDA's `fallback`: after `failureThreshold` consecutive reads in which every signal
/// failed, run `replicas` as `behavior` says; before that the current count is held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FallbackSpec {
    /// Replicas to fall back to (within [minReplicas, maxReplicas]).
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Consecutive failed reads before falling back.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: i32,
    /// static: `replicas`; currentReplicas: hold the current count; currentReplicasIfHigher:
    /// the larger of the two; currentReplicasIfLower: the smaller.
    #[serde(default)]
    pub behavior: FallbackBehavior,
}

/// Failed reads before a fallback, for `fallback` and the legacy `fallbackReplicas` alike.
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 3;

fn default_failure_threshold() -> i32 {
    DEFAULT_FAILURE_THRESHOLD
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FallbackBehavior {
    #[default]
    Static,
    CurrentReplicas,
    CurrentReplicasIfHigher,
    CurrentReplicasIfLower,
}
