//! `QueueConfig`: one virtual waiting room. Its spec is the queue id plus the app's
//! [`QueueSettings`], so what a user writes is exactly what the app receives.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;
use crate::runtime::QueueSettings;

/// A virtual waiting room the app runs: how many users are admitted at once, how fast, and
/// when the queue opens and closes.
// kube's repeated `printcolumn(...)` entries look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "floodgate.dev",
    version = "v1alpha1",
    kind = "QueueConfig",
    namespaced,
    status = "QueueConfigStatus",
    shortname = "qc",
    category = "floodgate",
    doc = "A virtual waiting room run by the Floodgate app.",
    printcolumn(name = "Queue", type_ = "string", json_path = ".spec.queueId"),
    printcolumn(name = "Waiting", type_ = "integer", json_path = ".status.waiting"),
    printcolumn(name = "Active", type_ = "integer", json_path = ".status.active"),
    printcolumn(
        name = "Admit/min",
        type_ = "integer",
        json_path = ".spec.admitPerMinute"
    ),
    printcolumn(name = "Paused", type_ = "boolean", json_path = ".spec.paused"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.opensAt) || !has(self.closesAt) || self.closesAt > self.opensAt",
     "message": "closesAt must be after opensAt"}
]))]
pub struct QueueConfigSpec {
    /// The id the app and its clients use for this queue (a DNS label: lowercase letters,
    /// digits and '-').
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub queue_id: String,
    /// The waiting-room settings published to the app.
    #[serde(flatten)]
    pub settings: QueueSettings,
}

/// What the operator last observed and published for this queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueConfigStatus {
    /// The metadata.generation the status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Users waiting in the queue (from the app's floodgate_queue_waiting gauge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<i64>,
    /// Admitted users with a live session (floodgate_queue_active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<i64>,
    /// Users admitted since the app started counting (floodgate_queue_admitted_total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_total: Option<i64>,
    /// Version of the runtime document that carries this queue's settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_version: Option<i64>,
    /// App replicas that report running publishedVersion or newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_by_replicas: Option<i32>,
    /// Ready and ConfigPublished.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
