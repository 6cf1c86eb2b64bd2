//! Extra scaling signals (KEDA's scalers) and where their credentials come from (KEDA's
//! `TriggerAuthentication`, simplified to keys of a Secret in the Campaign's namespace).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One extra signal. Its recommendation is `ceil(value / target)` replicas (KEDA's
/// `AverageValue`), combined with the queue and latency signals by taking the largest; a
/// trigger that cannot be read makes the signals "partly unavailable" (no scale-down on the
/// rest, fallback when nothing is left).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.prometheus) != has(self.redisStream)",
     "message": "a trigger needs exactly one of prometheus or redisStream"}
]))]
pub struct TriggerSpec {
    /// Names the trigger in conditions, events and the decision's reason.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A PromQL query (KEDA's `prometheus` scaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusTrigger>,
    /// A Redis Stream consumer group's backlog (KEDA's `redis-streams` scaler).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_stream: Option<RedisStreamTrigger>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.threshold > 0.0", "message": "threshold must be above 0"},
    {"rule": "!has(self.activationThreshold) || self.activationThreshold >= 0.0",
     "message": "activationThreshold must not be negative"}
]))]
pub struct PrometheusTrigger {
    /// Prometheus to ask; defaults to `scaling.metrics.prometheus.url` (with its authRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://"))]
    pub server_address: Option<String>,
    /// Credentials for `serverAddress` (the campaign's Prometheus authRef is never sent to
    /// another server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_ref: Option<PrometheusAuthRef>,
    /// An instant PromQL query that must return exactly one series (or a scalar).
    #[schemars(length(min = 1, max = 4096))]
    pub query: String,
    /// Target value per replica: replicas = ceil(value / threshold) (KEDA `AverageValue`).
    pub threshold: f64,
    /// At or below this value the trigger asks for nothing (KEDA's `activationThreshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_threshold: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.pendingEntriesCount) != has(self.lagCount)",
     "message": "a redisStream trigger needs exactly one of pendingEntriesCount or lagCount"}
]))]
pub struct RedisStreamTrigger {
    /// The stream's key, as is (no prefix is added), in the operator's Redis.
    #[schemars(length(min = 1, max = 512))]
    pub stream: String,
    /// The consumer group whose backlog is counted.
    #[schemars(length(min = 1, max = 256))]
    pub consumer_group: String,
    /// Target of delivered-but-unacknowledged entries (XPENDING) per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub pending_entries_count: Option<i64>,
    /// Target of entries not yet delivered to the group (XINFO GROUPS `lag`, Redis 7) per
    /// replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lag_count: Option<i64>,
}

/// Keys of a Secret (same namespace as the Campaign) holding Prometheus credentials: a bearer
/// token, or basic auth, and optionally the CA an `https://` URL is verified against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.bearerTokenKey) && has(self.usernameKey))",
     "message": "use bearerTokenKey or usernameKey/passwordKey, not both"},
    {"rule": "has(self.usernameKey) == has(self.passwordKey)",
     "message": "usernameKey and passwordKey go together"}
]))]
pub struct PrometheusAuthRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of a bearer token (sent as `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub bearer_token_key: Option<String>,
    /// Key of the basic-auth user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: Option<String>,
    /// Key of the basic-auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: Option<String>,
    /// Key of a PEM CA bundle trusted instead of the operator's for `https://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_key: Option<String>,
}

/// Keys of a Secret (same namespace as the Campaign) holding Redis credentials for this
/// Campaign's reads (stream triggers and, with `--queue-depth=redis`, queue depth); the
/// operator's Redis URL stays the address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.usernameKey) || has(self.passwordKey)",
     "message": "usernameKey needs passwordKey"}
]))]
pub struct RedisAuthRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the ACL user name (`AUTH user password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: Option<String>,
    /// Key of the password (`requirepass` or the ACL user's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: Option<String>,
    /// Key of a PEM CA bundle for a `rediss://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_key: Option<String>,
}
