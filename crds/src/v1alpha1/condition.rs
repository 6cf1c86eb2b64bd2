//! Status conditions shared by both resources, shaped like `metav1.Condition` but with chrono
//! times, so the operator's pure status logic needs no Kubernetes types.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. Ready, MetricsAvailable, RedisConfigured, ConfigPublished, Conflict.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason for the last transition.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (not when the condition was last written).
    pub last_transition_time: DateTime<Utc>,
    /// The spec generation this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// Inserts or updates `new` in `conditions`, keeping the old transition time when the status
/// did not change so `kubectl describe` shows how long a condition has held.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time;
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: ConditionStatus, secs: i64) -> Condition {
        Condition {
            type_: "Ready".into(),
            status,
            reason: "R".into(),
            message: String::new(),
            last_transition_time: DateTime::from_timestamp(secs, 0).unwrap_or_default(),
            observed_generation: None,
        }
    }

    #[test]
    fn transition_time_only_moves_on_status_change() {
        let mut cs = vec![cond(ConditionStatus::True, 10)];
        set_condition(&mut cs, cond(ConditionStatus::True, 20));
        assert_eq!(cs[0].last_transition_time.timestamp(), 10);
        set_condition(&mut cs, cond(ConditionStatus::False, 30));
        assert_eq!(cs[0].last_transition_time.timestamp(), 30);
        assert_eq!(cs.len(), 1);
    }
}
