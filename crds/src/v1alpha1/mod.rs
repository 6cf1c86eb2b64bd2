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

pub use campaign::{
    Campaign, CampaignBreakers, CampaignSpec, CampaignStatus, MaxmemoryPolicy, MetricsSpec,
    ObservedSignals, PanicSpec, Phase, PrometheusSpec, RampDown, Recurrence, RedisApplied,
    RedisSpec, ReplicaStatus, RestoreSpec, ScaleTargetRef, ScalingRules, ScalingSpec, Schedule,
    ScrapeSpec, StepLimit, Target, Window,
};
pub use condition::{Condition, ConditionStatus, set_condition};
pub use queue_config::{QueueConfig, QueueConfigSpec, QueueConfigStatus};

/// API group of every Floodgate resource.
pub const GROUP: &str = "floodgate.dev";
/// `kubectl get floodgate` lists every Floodgate resource.
pub const CATEGORY: &str = "floodgate";
