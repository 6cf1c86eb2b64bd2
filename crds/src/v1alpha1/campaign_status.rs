//! What the operator reports about a Campaign: phase, replicas, signals, Redis settings and
//! conditions (`kubectl get camp`, `kubectl describe camp`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum Phase {
    /// Before startsAt − prewarm: nothing is changed yet.
    Scheduled,
    /// Between startsAt − prewarm and startsAt: scaled to at least minReplicas.
    Prewarming,
    /// Between startsAt and endsAt: scaling from queue depth and latency.
    Active,
    /// After endsAt: the Deployment steps back down to its pre-campaign replicas with the
    /// scale-down policy, and Redis gets its pre-campaign settings once its data fits.
    Ended,
}

/// What the operator observed, decided and applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignStatus {
    /// The metadata.generation the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Scheduled, Prewarming, Active or Ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Replica counts and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaStatus>,
    /// The last signals read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedSignals>,
    /// True while a burst is being absorbed (no scale-down).
    #[serde(default)]
    pub panic: bool,
    /// True while every signal has failed failureThreshold times in a row and the fallback
    /// is used.
    #[serde(default)]
    pub fallback_active: bool,
    /// When the operator last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<DateTime<Utc>>,
    /// Redis settings as CONFIG GET returned them after the last apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_applied: Option<RedisApplied>,
    /// Redis settings found before the campaign first changed them, saved before its first
    /// CONFIG SET; restored when it ends or is deleted, once used_memory fits under them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_before: Option<RedisApplied>,
    /// Version of the runtime document last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_version: Option<i64>,
    /// App replicas that report running publishedVersion or newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by_replicas: Option<i32>,
    /// `Kind/name` of the workload scaled, e.g. StatefulSet/shop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The schedule's window in progress, or the next one (for a recurrence: the next
    /// occurrence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Ready, Active, Fallback, Paused, Conflict, MetricsAvailable, RedisConfigured and
    /// ConfigPublished.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What the replica decision remembers (stabilization windows, step history, panic,
    /// failed reads), loaded by an operator that starts or first sees the campaign so a
    /// restart honours the windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionMemory>,
}

/// The replica decision's memory. Written with the ordinary status write: it changes only
/// when a recommendation changes, a change is applied, a burst is seen or a read fails, so a
/// steady campaign adds no writes. Bounded: at most 200 entries per list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionMemory {
    /// Raw recommendations as runs: from `since` on it was `replicas`, until the next
    /// entry (the last one until now); kept for the longer stabilization window.
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub recommendations: Vec<TimedReplicas>,
    /// Replica changes the operator applied, kept for the longest step-policy period (each
    /// policy counts those inside its own period).
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub changes: Vec<TimedChange>,
    /// Last time the panic window saw a burst; panic lasts a stable window after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_burst: Option<DateTime<Utc>>,
    /// Consecutive reads in which every signal failed (counted up to the failure threshold).
    #[serde(default)]
    pub failed_reads: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimedReplicas {
    pub since: DateTime<Utc>,
    pub replicas: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimedChange {
    pub at: DateTime<Utc>,
    /// Replicas added (negative: removed).
    pub delta: i32,
}

/// One window of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Replicas of the Deployment's scale subresource when last read.
    pub current: i32,
    /// Replicas the operator wants.
    pub desired: i32,
    /// Why, e.g. "queue depth 91000 / 2000 per replica".
    #[serde(default)]
    pub reason: String,
    /// Replicas before the campaign first scaled the Deployment, saved before its first
    /// scale patch; stepped back to after it ends, restored at once on delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedSignals {
    /// Users waiting across the campaign's queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<i64>,
    /// p95 latency of the app, e.g. 212ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<String>,
    /// When the signals were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisApplied {
    /// maxmemory in bytes as Redis reports it.
    #[serde(default)]
    pub maxmemory: String,
    /// maxmemory-policy as Redis reports it.
    #[serde(default)]
    pub maxmemory_policy: String,
}
