//! `floodgate.dev/v1alpha1`: the `Campaign` and `QueueConfig` custom resources.
//!
//! The schemas are generated from these types (`floodgate-operator crd`), so every field's doc
//! comment becomes its `kubectl explain` text and every validation lives here, where the API
//! server enforces it, rather than in the reconciler.

mod campaign;
mod campaign_control;
mod campaign_status;
mod condition;
mod queue_config;
mod scaling;
mod triggers;

pub use campaign::{
    Campaign, CampaignBreakers, CampaignSpec, CampaignStatus, MaxmemoryPolicy, MetricsSpec,
    ObservedSignals, Phase, PrometheusAuthRef, PrometheusSpec, PrometheusTrigger, RampDown,
    Recurrence, RedisApplied, RedisAuthRef, RedisSpec, RedisStreamTrigger, ReplicaStatus,
    RestoreSpec, ScaleTargetRef, Schedule, ScrapeSpec, Target, TriggerSpec, Window,
};
pub use campaign_status::{DecisionMemory, TimedChange, TimedReplicas};
pub use condition::{Condition, ConditionStatus, set_condition};
pub use queue_config::{QueueConfig, QueueConfigSpec, QueueConfigStatus};
pub use scaling::{
    DEFAULT_FAILURE_THRESHOLD, FallbackBehavior, FallbackSpec, PanicSpec, PolicyType,
    ScalingPolicy, ScalingRules, ScalingSpec, SelectPolicy, StepLimit, default_scale_down,
    default_scale_up,
};

/// API group of every Floodgate resource.
pub const GROUP: &str = "floodgate.dev";
/// `kubectl get floodgate` lists every Floodgate resource.
pub const CATEGORY: &str = "floodgate";
