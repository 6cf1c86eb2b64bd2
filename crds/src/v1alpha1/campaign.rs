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
pub use super::scaling::ScalingSpec;
pub use super::triggers::{
    PrometheusAuthRef, PrometheusTrigger, RedisAuthRef, RedisStreamTrigger, TriggerSpec,
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
    /// Redis credentials from a Secret for this campaign's Redis reads (stream triggers, and
    /// queue depth with `--queue-depth=redis`); the operator's own by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_auth_ref: Option<RedisAuthRef>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090.
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
    /// Credentials from a Secret: a bearer token or basic auth, and a CA for https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ref: Option<PrometheusAuthRef>,
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
