//! What a Campaign commands and when: its target workload (`deployment` or `scaleTargetRef`),
//! its schedule (one window or a recurrence in a timezone) and what happens to the target's
//! replicas at the end (`restore`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Dur;

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
