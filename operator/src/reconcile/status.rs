//! Status helpers: conditions with reasons and messages, and how signals are shown.

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{
    CampaignStatus, Condition, ConditionStatus, QueueConfigStatus, set_condition,
};

use crate::scaling::Latency;

pub const READY: &str = "Ready";
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
pub const REDIS_CONFIGURED: &str = "RedisConfigured";
pub const CONFIG_PUBLISHED: &str = "ConfigPublished";
pub const CONFLICT: &str = "Conflict";
pub const ACTIVE: &str = "Active";
pub const FALLBACK: &str = "Fallback";
pub const PAUSED: &str = "Paused";

/// While only `observed.at` moves, a Campaign's status is still written this often, so the
/// signal time stays meaningful without an API write on every 2 s resync.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// Whether a Campaign status is worth writing: never written, anything but `observed.at`
/// changed, or the written `observed.at` is [`STATUS_REFRESH`] old. (Condition transition
/// times already stay put while a condition's status does not change.)
pub fn campaign_needs_write(
    old: Option<&CampaignStatus>,
    new: &CampaignStatus,
    now: DateTime<Utc>,
) -> bool {
    let Some(old) = old else { return true };
    let at = |s: &CampaignStatus| s.observed.as_ref().and_then(|o| o.at);
    let mut same_time = new.clone();
    if let Some(o) = same_time.observed.as_mut() {
        o.at = at(old);
    }
    if same_time != *old {
        return true;
    }
    match (at(old), at(new)) {
        (Some(then), Some(_)) => (now - then).to_std().unwrap_or(Duration::ZERO) >= STATUS_REFRESH,
        _ => false,
    }
}

/// A QueueConfig's status has no timestamps outside its conditions: write on any change.
pub fn queue_needs_write(old: Option<&QueueConfigStatus>, new: &QueueConfigStatus) -> bool {
    old != Some(new)
}

/// The conditions of one resource in one reconcile: every condition set through it gets the
/// same `lastTransitionTime` candidate (`now`) and `observedGeneration`. A condition keeps its
/// transition time while its status does not change.
pub struct Conditions<'a> {
    list: &'a mut Vec<Condition>,
    now: DateTime<Utc>,
    generation: Option<i64>,
}

impl<'a> Conditions<'a> {
    pub fn new(list: &'a mut Vec<Condition>, now: DateTime<Utc>, generation: Option<i64>) -> Self {
        Self {
            list,
            now,
            generation,
        }
    }

    /// For a Campaign's or QueueConfig's status list, stamped with the object's generation.
    pub fn of<K: kube::Resource>(
        obj: &K,
        list: &'a mut Vec<Condition>,
        now: DateTime<Utc>,
    ) -> Self {
        Self::new(list, now, obj.meta().generation)
    }

    /// Sets `type_` to `status` with `reason` and `message`.
    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        set_condition(
            self.list,
            Condition {
                type_: type_.to_owned(),
                status: ConditionStatus::from(status),
                reason: reason.to_owned(),
                message: message.into(),
                last_transition_time: self.now,
                observed_generation: self.generation,
            },
        );
    }
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

/// The message of `type_`, empty if absent.
pub fn message_of<'a>(conditions: &'a [Condition], type_: &str) -> &'a str {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map_or("", |c| c.message.as_str())
}

/// `212ms`, as in the P95 printer column.
pub fn show_latency(l: Latency) -> Option<String> {
    match l {
        Latency::P95Ms(ms) => Some(format!("{}ms", ms.round() as u64)),
        Latency::Idle => Some("idle".into()),
        Latency::Unavailable => None,
    }
}

#[cfg(test)]
mod tests {
    use floodgate_crds::v1alpha1::{ObservedSignals, ReplicaStatus};

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn status(waiting: i64, read_at: i64) -> CampaignStatus {
        let mut s = CampaignStatus {
            replicas: Some(ReplicaStatus {
                current: 4,
                desired: 4,
                reason: "queue depth".into(),
                before: Some(2),
            }),
            observed: Some(ObservedSignals {
                waiting: Some(waiting),
                p95: Some("120ms".into()),
                at: Some(at(read_at)),
            }),
            ..Default::default()
        };
        Conditions::new(&mut s.conditions, at(0), Some(1)).set(READY, true, "Commanding", "Active");
        s
    }

    #[test]
    fn only_the_signal_time_moving_is_not_a_change_until_the_refresh_is_due() {
        let old = status(100, 0);
        for secs in [2, 10, 28] {
            assert!(!campaign_needs_write(
                Some(&old),
                &status(100, secs),
                at(secs)
            ));
        }
        assert!(campaign_needs_write(Some(&old), &status(100, 30), at(30)));
    }

    #[test]
    fn any_other_change_or_a_first_status_is_written() {
        let old = status(100, 0);
        assert!(campaign_needs_write(None, &old, at(0)));
        assert!(campaign_needs_write(Some(&old), &status(101, 2), at(2)));
        let mut flipped = status(100, 2);
        Conditions::new(&mut flipped.conditions, at(2), Some(1)).set(
            READY,
            false,
            "TargetNotFound",
            "",
        );
        assert!(campaign_needs_write(Some(&old), &flipped, at(2)));
        assert!(!campaign_needs_write(Some(&old), &old, at(5)));
    }

    #[test]
    fn a_queue_status_is_written_only_when_it_changes() {
        let mut q = QueueConfigStatus::default();
        assert!(queue_needs_write(None, &q));
        assert!(!queue_needs_write(Some(&q.clone()), &q));
        let old = q.clone();
        q.waiting = Some(3);
        assert!(queue_needs_write(Some(&old), &q));
    }
}
