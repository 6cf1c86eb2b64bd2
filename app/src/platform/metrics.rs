//! Prometheus metrics (prometheus-client, OpenMetrics text). Names follow ARCHITECTURE.md:
//! `floodgate_*`, seconds, `_total` for counters.

use std::{borrow::Cow, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template, or `unmatched`; borrowed where static so the per-request label
    /// set allocates as little as possible.
    pub route: Cow<'static, str>,
    pub method: Cow<'static, str>,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitCallLabels {
    pub dependency: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupCommitLabels {
    pub batch: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Jobs per group-commit transaction (`platform::group_commit`).
    pub group_commit_batch: Family<GroupCommitLabels, Histogram>,
    /// 0 closed, 1 open, 2 half-open, 3 forced-open, 4 disabled.
    pub circuit_state: Family<CircuitLabels, Gauge>,
    /// Calls through a breaker by outcome: success, failure, slow, rejected.
    pub circuit_calls: Family<CircuitCallLabels, Counter>,
    /// Guarded calls in flight per dependency, and calls its full bulkhead refused.
    pub bulkhead_in_flight: Family<CircuitLabels, Gauge>,
    pub bulkhead_rejected: Family<CircuitLabels, Counter>,
    pub http_duration: Family<HttpLabels, Histogram>,
    pub http_in_flight: Gauge,
    pub runtime_config_version: Gauge,
    pub runtime_config_rejected: Counter,
    /// 1 while the runtime config document is absent from Redis (the last good one is kept).
    pub runtime_config_missing: Gauge,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub rate_limited: Family<LimitLabels, Counter>,
    /// Queue-wide waiting count (the same on every replica; the operator scales on it).
    pub queue_waiting: Family<QueueLabels, Gauge>,
    pub queue_active: Family<QueueLabels, Gauge>,
    /// Admissions made by this replica while it held the queue's lease.
    pub queue_admitted: Family<QueueLabels, Counter>,
    pub queue_abandoned: Family<QueueLabels, Counter>,
    pub queue_admission_rate: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    /// Entries of a stream not yet persisted by its consumer group.
    pub stream_lag: Family<StreamLabels, Gauge>,
    /// Coupon grants Redis accepted and PostgreSQL refused (`sold-out`, `already-issued`):
    /// Redis had lost holders; each refusal resyncs it (`coupons::batch`).
    pub coupon_grants_refused: Family<ReasonLabels, Counter>,
    /// PostgreSQL lookups of coupon campaigns Redis did not have, by outcome (`found`,
    /// `unknown`); unknown ids are remembered briefly (`coupons::directory`).
    pub coupon_campaign_lookups: Family<OutcomeLabels, Counter>,
    /// Password hashes running now, the most ever at once, and requests refused for want of
    /// a hashing slot (`auth::password`).
    pub password_hashes_in_flight: Gauge,
    pub password_hashes_in_flight_peak: Gauge,
    pub password_hash_rejected: Counter,
}

/// Buckets from 0.5 ms to 10 s: fine at the fast end where cached reads live, and wide
/// enough to show the multi-second tails the source reports suffered.
const HTTP_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0,
];

/// Powers of two up to the largest sensible `FLOODGATE_GROUP_COMMIT_MAX`.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(|| Histogram::new(HTTP_BUCKETS));
        registry.register(
            "floodgate_http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            http_duration.clone(),
        );
        let http_in_flight = Gauge::default();
        registry.register(
            "floodgate_http_requests_in_flight",
            "HTTP requests being served",
            http_in_flight.clone(),
        );
        let runtime_config_version = Gauge::default();
        registry.register(
            "floodgate_runtime_config_version",
            "Version of the runtime config document this replica applies (0: built-in defaults)",
            runtime_config_version.clone(),
        );
        let runtime_config_rejected = Counter::default();
        registry.register(
            "floodgate_runtime_config_rejected",
            "Runtime config documents rejected as invalid",
            runtime_config_rejected.clone(),
        );
        let runtime_config_missing = Gauge::default();
        registry.register(
            "floodgate_runtime_config_missing",
            "1 while the runtime config document is absent from Redis (the last good config, if any, stays in force)",
            runtime_config_missing.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "floodgate_cache_requests",
            "Cache lookups by cache and result",
            cache_requests.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "floodgate_rate_limited",
            "Requests refused by a rate limit",
            rate_limited.clone(),
        );
        let queue_waiting = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "floodgate_queue_waiting",
            "Users waiting in a waiting room",
            queue_waiting.clone(),
        );
        let queue_active = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "floodgate_queue_active",
            "Admitted sessions live in a waiting room",
            queue_active.clone(),
        );
        let queue_admitted = Family::<QueueLabels, Counter>::default();
        registry.register(
            "floodgate_queue_admitted",
            "Users admitted from a waiting room",
            queue_admitted.clone(),
        );
        let queue_abandoned = Family::<QueueLabels, Counter>::default();
        registry.register(
            "floodgate_queue_abandoned",
            "Waiting places lost because the user stopped polling",
            queue_abandoned.clone(),
        );
        let queue_admission_rate = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "floodgate_queue_admission_rate",
            "Measured admissions per second over the last 10 s",
            queue_admission_rate.clone(),
        );
        let stream_lag = Family::<StreamLabels, Gauge>::default();
        registry.register(
            "floodgate_stream_lag",
            "Entries in a stream not yet persisted by its consumer group",
            stream_lag.clone(),
        );
        let coupon_grants_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "floodgate_coupon_grants_refused",
            "Coupon grants Redis accepted and PostgreSQL refused (Redis had lost holders), by reason",
            coupon_grants_refused.clone(),
        );
        let coupon_campaign_lookups = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "floodgate_coupon_campaign_lookups",
            "PostgreSQL lookups of coupon campaigns Redis did not have, by outcome (found, unknown)",
            coupon_campaign_lookups.clone(),
        );
        let circuit_state = Family::<CircuitLabels, Gauge>::default();
        registry.register(
            "floodgate_circuit_state",
            "Circuit breaker state per dependency: 0 closed, 1 open, 2 half-open, 3 forced-open, 4 disabled",
            circuit_state.clone(),
        );
        let circuit_calls = Family::<CircuitCallLabels, Counter>::default();
        registry.register(
            "floodgate_circuit_calls",
            "Calls through a circuit breaker by outcome",
            circuit_calls.clone(),
        );
        let bulkhead_in_flight = Family::<CircuitLabels, Gauge>::default();
        registry.register(
            "floodgate_bulkhead_in_flight",
            "Guarded calls in flight per dependency (its bulkhead's occupied slots)",
            bulkhead_in_flight.clone(),
        );
        let bulkhead_rejected = Family::<CircuitLabels, Counter>::default();
        registry.register(
            "floodgate_bulkhead_rejected",
            "Calls refused because the dependency's bulkhead was full",
            bulkhead_rejected.clone(),
        );
        let group_commit_batch =
            Family::<GroupCommitLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(BATCH_BUCKETS)
            });
        registry.register(
            "floodgate_group_commit_batch_size",
            "Writes carried by one group-commit transaction, by batch kind",
            group_commit_batch.clone(),
        );
        let password_hashes_in_flight = Gauge::default();
        registry.register(
            "floodgate_password_hashes_in_flight",
            "Password hashes (argon2id, about 19 MiB each) running now",
            password_hashes_in_flight.clone(),
        );
        let password_hashes_in_flight_peak = Gauge::default();
        registry.register(
            "floodgate_password_hashes_in_flight_peak",
            "The most password hashes that ran at once since the process started",
            password_hashes_in_flight_peak.clone(),
        );
        let password_hash_rejected = Counter::default();
        registry.register(
            "floodgate_password_hash_rejected",
            "Logins and signups refused with 503 because every hashing slot was taken",
            password_hash_rejected.clone(),
        );
        Self {
            password_hashes_in_flight,
            password_hashes_in_flight_peak,
            password_hash_rejected,
            group_commit_batch,
            circuit_state,
            circuit_calls,
            bulkhead_in_flight,
            bulkhead_rejected,
            stream_lag,
            coupon_grants_refused,
            coupon_campaign_lookups,
            queue_waiting,
            queue_active,
            queue_admitted,
            queue_abandoned,
            queue_admission_rate,
            registry,
            http_duration,
            http_in_flight,
            runtime_config_version,
            runtime_config_rejected,
            runtime_config_missing,
            cache_requests,
            rate_limited,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
