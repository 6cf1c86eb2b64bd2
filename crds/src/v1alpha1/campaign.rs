//! `Campaign`: one sales event and the resources it commands — the app Deployment's replica
//! count, the Redis memory settings and the circuit breakers and TTLs the app runs with.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::campaign_status::{
    CampaignStatus, ObservedSignals, Phase, RedisApplied, ReplicaStatus, Window,
};
use crate::{duration::Dur, runtime::BreakerSettings, runtime::Ttls};

/// A sales event: when it runs, which waiting rooms it drives, how the app scales during it,
/// and how Redis and the app's circuit breakers are set while it is active.
// kube's repeated `printcolumn(...)` entries look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "floodgate.dev",
    version = "v1alpha1",
    kind = "Campaign",
    namespaced,
    status = "CampaignStatus",
    shortname = "camp",
    category = "floodgate",
    doc = "A Floodgate sales event: schedule, waiting rooms, autoscaling, Redis and breaker settings.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Active\")].status"
    ),
    printcolumn(
        name = "Fallback",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Fallback\")].status"
    ),
    printcolumn(
        name = "Paused",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Paused\")].status"
    ),
    printcolumn(
        name = "Conflict",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Conflict\")].status"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.replicas.desired"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas.current"
    ),
    printcolumn(
        name = "Waiting",
        type_ = "integer",
        json_path = ".status.observed.waiting",
        priority = "1"
    ),
    printcolumn(
        name = "P95",
        type_ = "string",
        json_path = ".status.observed.p95",
        priority = "1"
    ),
    printcolumn(
        name = "Workload",
        type_ = "string",
        json_path = ".status.target",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CampaignSpec {
    /// The workload this campaign scales.
    pub target: Target,
    /// When the event runs.
    pub schedule: Schedule,
    /// Names of the QueueConfigs (same namespace) this event drives.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub queues: Vec<String>,
    /// How the target is scaled while the campaign is Prewarming or Active.
    pub scaling: ScalingSpec,
    /// Redis memory settings and record TTLs applied while the campaign is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// Circuit-breaker settings the app runs with while the campaign is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breakers: Option<CampaignBreakers>,
    /// What happens to the target's replica count when the campaign ends or is deleted.
    #[serde(default, skip_serializing_if = "RestoreSpec::is_default")]
    pub restore: RestoreSpec,
}

/// The workload the campaign scales: the legacy `deployment` name, or a `scaleTargetRef`
/// (as in HPA and KEDA) to anything with a `/scale` subresource the operator may scale.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.deployment) != has(self.scaleTargetRef)",
     "message": "set exactly one of target.deployment and target.scaleTargetRef"}
]))]
pub struct Target {
    /// Name of an apps/v1 Deployment in the campaign's namespace (the original form; the
    /// same as scaleTargetRef {apiVersion: apps/v1, kind: Deployment, name}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub deployment: Option<String>,
    /// The workload to scale through its `/scale` subresource, in the campaign's namespace:
    /// an apps/v1 Deployment or StatefulSet, or an argoproj.io/v1alpha1 Rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target_ref: Option<ScaleTargetRef>,
}

/// HPA's and KEDA's `scaleTargetRef`. Only the kinds the chart's RBAC lets the operator scale
/// are accepted (the API server refuses others: a typo fails at apply, not at the first scale).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(self.apiVersion == 'apps/v1' && (self.kind == 'Deployment' || self.kind == 'StatefulSet')) || (self.apiVersion == 'argoproj.io/v1alpha1' && self.kind == 'Rollout')",
     "message": "scaleTargetRef must be apps/v1 Deployment, apps/v1 StatefulSet or argoproj.io/v1alpha1 Rollout"}
]))]
pub struct ScaleTargetRef {
    /// apps/v1 or argoproj.io/v1alpha1.
    #[serde(default = "default_target_api_version")]
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Deployment, StatefulSet or Rollout.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the workload in the campaign's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_target_api_version() -> String {
    "apps/v1".into()
}

impl Target {
    /// The workload as a `scaleTargetRef`, whichever form the spec uses (`None` only for a
    /// spec that sets neither, which validation refuses).
    pub fn scale_ref(&self) -> Option<ScaleTargetRef> {
        match (&self.scale_target_ref, &self.deployment) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(name)) => Some(ScaleTargetRef {
                api_version: default_target_api_version(),
                kind: "Deployment".into(),
                name: name.clone(),
            }),
            (None, None) => None,
        }
    }

    /// `Kind/name` for messages, e.g. `StatefulSet/shop`.
    pub fn describe(&self) -> String {
        self.scale_ref()
            .map_or_else(|| "no target".into(), |r| format!("{}/{}", r.kind, r.name))
    }
}

/// When the event runs: once (`startsAt`/`endsAt`) or on a recurrence in a timezone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.startsAt) == has(self.endsAt)",
     "message": "startsAt and endsAt go together"},
    {"rule": "has(self.startsAt) != has(self.recurrence)",
     "message": "set either startsAt/endsAt or recurrence, not both and not neither"},
    {"rule": "!has(self.startsAt) || !has(self.endsAt) || self.endsAt > self.startsAt",
     "message": "endsAt must be after startsAt"}
]))]
pub struct Schedule {
    /// When sales open (RFC 3339). With endsAt; not with recurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
    /// When the event is over and the target returns to its pre-campaign size (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    /// A window that repeats (KEDA's cron trigger), instead of startsAt/endsAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
    /// How long before each start the target is scaled up to minReplicas.
    #[serde(default = "default_prewarm")]
    pub prewarm: Dur,
}

/// A window that opens at each time the cron expression names, in `timezone`, and lasts
/// `duration` (absolute time: a window across a DST change is still `duration` long).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recurrence {
    /// Five fields (minute hour day-of-month month day-of-week), e.g. "0 18 * * FRI" for
    /// every Friday at 18:00. A start that falls into a DST gap opens at the first valid
    /// time after it; one in a repeated hour opens once, at its first instance.
    #[schemars(length(min = 9, max = 200))]
    pub cron: String,
    /// IANA timezone the cron expression is read in, e.g. Europe/Berlin; defaults to UTC.
    #[serde(default = "default_timezone")]
    #[schemars(length(min = 1, max = 64))]
    pub timezone: String,
    /// How long each window stays open.
    pub duration: Dur,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// What the campaign does to the target's replicas when it ends or is deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// KEDA's `restoreToOriginalReplicaCount`. True (the default here, and the behaviour of
    /// every campaign before this field existed; KEDA's default is false): after the end the
    /// target steps back to its pre-campaign replicas and on deletion it is restored. False:
    /// the replica count is left where the campaign left it.
    #[serde(default = "yes")]
    pub to_original_replica_count: bool,
    /// Walk back down in steps instead of the scale-down policy after the end and instead
    /// of one jump on deletion (the finalizer keeps the object until the ramp is done, at
    /// most `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp_down: Option<RampDown>,
}

fn yes() -> bool {
    true
}

impl Default for RestoreSpec {
    fn default() -> Self {
        Self {
            to_original_replica_count: true,
            ramp_down: None,
        }
    }
}

impl RestoreSpec {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Each `periodSeconds` the replicas drop by `pods`, or by `percent` % of the current count
/// (at least one pod), never below the pre-campaign count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.pods) != has(self.percent)",
     "message": "rampDown takes exactly one of pods and percent"}
]))]
pub struct RampDown {
    /// Pods removed per step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub pods: Option<i32>,
    /// Percent of the current replicas removed per step (rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<i32>,
    /// Seconds between two steps.
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,
    /// On deletion, after this long the rest is restored in one jump and the finalizer
    /// released; defaults to 10m.
    #[serde(default = "default_ramp_timeout")]
    pub timeout: Dur,
}

fn default_ramp_timeout() -> Dur {
    Dur::from_secs(600)
}

fn default_prewarm() -> Dur {
    Dur::from_secs(15 * 60)
}

/// Autoscaling in the vocabulary of HPA v2 behaviour, with KEDA's and Knative's lessons:
/// queue depth and latency signals, step limits, stabilization, panic mode and a fallback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas",
     "message": "minReplicas must not exceed maxReplicas"},
    {"rule": "!has(self.fallbackReplicas) || (self.fallbackReplicas >= self.minReplicas && self.fallbackReplicas <= self.maxReplicas)",
     "message": "fallbackReplicas must lie within [minReplicas, maxReplicas]"},
    {"rule": "!has(self.latencyMaxReplicas) || (self.latencyMaxReplicas >= self.minReplicas && self.latencyMaxReplicas <= self.maxReplicas)",
     "message": "latencyMaxReplicas must lie within [minReplicas, maxReplicas]"}
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
    /// Relative band around the latency target inside which no change is made (0.1 = ±10 %).
    #[serde(default = "default_tolerance")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: f64,
    /// Limits on growing the Deployment.
    #[serde(default = "default_scale_up")]
    pub scale_up: ScalingRules,
    /// Limits on shrinking the Deployment.
    #[serde(default = "default_scale_down")]
    pub scale_down: ScalingRules,
    /// Burst detection: while panicking the Deployment never shrinks.
    #[serde(default)]
    pub panic: PanicSpec,
    /// Replicas to run while metrics are unavailable; defaults to the current count (never
    /// below minReplicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_replicas: Option<i32>,
    /// Most replicas latency alone may ask for while the queue is empty (slowness with an
    /// empty queue usually means a saturated database, where more pods make it worse);
    /// defaults to twice minReplicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max_replicas: Option<i32>,
    /// Where the signals come from; by default the app pods' /metrics are scraped.
    #[serde(default)]
    pub metrics: MetricsSpec,
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
fn default_scale_up() -> ScalingRules {
    ScalingRules {
        stabilization: Dur::from_secs(0),
        max_step: StepLimit {
            pods: 8,
            percent: 100,
            period: Dur::from_secs(15),
        },
    }
}
fn default_scale_down() -> ScalingRules {
    ScalingRules {
        stabilization: Dur::from_secs(300),
        max_step: StepLimit {
            pods: 2,
            percent: 20,
            period: Dur::from_secs(60),
        },
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Recommendations of this long a window are considered; for scale-down the highest one
    /// wins, so a brief dip does not shrink the Deployment.
    pub stabilization: Dur,
    /// The largest change allowed within one period.
    pub max_step: StepLimit,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PanicSpec {
    /// Short window over which a burst is detected.
    #[serde(default = "default_panic_window")]
    pub window: Dur,
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

impl Default for PanicSpec {
    fn default() -> Self {
        Self {
            window: default_panic_window(),
            threshold: default_panic_threshold(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Read p95 from this Prometheus instead of scraping the app pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
    /// How to scrape the app pods when Prometheus is not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeSpec>,
    /// Window over which p95 is computed from histogram bucket deltas; defaults to 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Dur>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeSpec {
    /// Port of the app's /metrics endpoint on each pod.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Path of the metrics endpoint.
    #[serde(default = "default_metrics_path")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: String,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Redis maxmemory, e.g. 1gb, 512mb or a byte count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(b|kb|mb|gb)?$"))]
    pub maxmemory: Option<String>,
    /// Redis eviction policy. Only noeviction is accepted by the operator (the other values
    /// stay in the enum so existing manifests still apply, but the operator refuses them with
    /// RedisConfigured=False/EvictionPolicyRefused): allkeys-* would evict stock gates and
    /// waiting-room places, and volatile-* evicts keys with a TTL, which the waiting room's
    /// keys carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmemory_policy: Option<MaxmemoryPolicy>,
    /// TTLs of the app's short-lived records while the campaign is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttls: Option<Ttls>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    Noeviction,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
}

impl MaxmemoryPolicy {
    /// The spelling Redis uses in `CONFIG SET maxmemory-policy`.
    pub fn as_redis(self) -> &'static str {
        match self {
            Self::Noeviction => "noeviction",
            Self::VolatileLru => "volatile-lru",
            Self::VolatileLfu => "volatile-lfu",
            Self::VolatileRandom => "volatile-random",
            Self::VolatileTtl => "volatile-ttl",
            Self::AllkeysLru => "allkeys-lru",
            Self::AllkeysLfu => "allkeys-lfu",
            Self::AllkeysRandom => "allkeys-random",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignBreakers {
    /// Breaker around PostgreSQL calls; the app default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<BreakerSettings>,
    /// Breaker around Redis calls; the app default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<BreakerSettings>,
}
