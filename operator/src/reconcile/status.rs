//! Status helpers: conditions with reasons and messages, and how signals are shown.

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Condition, ConditionStatus, set_condition};

use crate::scaling::Latency;

pub const READY: &str = "Ready";
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
pub const REDIS_CONFIGURED: &str = "RedisConfigured";
pub const CONFIG_PUBLISHED: &str = "ConfigPublished";
pub const CONFLICT: &str = "Conflict";

/// Sets one condition, keeping its transition time when the status is unchanged.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    now: DateTime<Utc>,
    generation: Option<i64>,
) {
    set_condition(
        conditions,
        Condition {
            type_: type_.to_owned(),
            status: ConditionStatus::from(status),
            reason: reason.to_owned(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: generation,
        },
    );
}

/// True when `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == ConditionStatus::True)
}

/// The reason of `type_`, if present.
pub fn reason_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.reason.as_str())
}

/// `212ms`, as in the P95 printer column.
pub fn show_latency(l: Latency) -> Option<String> {
    match l {
        Latency::P95Ms(ms) => Some(format!("{}ms", ms.round() as u64)),
        Latency::Idle => Some("idle".into()),
        Latency::Unavailable => None,
    }
}
