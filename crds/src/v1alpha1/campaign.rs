//! `Campaign`: one sales event and the resources it commands — the app Deployment's replica
//! count, the Redis memory settings and the circuit breakers and TTLs the app runs with.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::campaign_control::{
    RampDown, Recurrence, RestoreSpec, ScaleTargetRef, Schedule, Target,
};
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
