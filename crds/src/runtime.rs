//! The runtime-configuration contract between the operator (writer) and the app (reader).
//!
//! The operator keeps one JSON document at `<prefix>config` (prefix `fg:` by default), bumps
//! its `version` with compare-and-set, and publishes the new version on
//! `<prefix>config:changed`. Every app replica applies it within seconds and records what it
//! runs in the hash `<prefix>config:applied`. A document that fails [`RuntimeConfig::parse`]
//! is rejected whole: the reader keeps the last good one.
//!
//! Field names are camelCase, like the custom resources they are merged from.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Dur;

/// Key of the JSON document, below the Redis key prefix.
pub const CONFIG_KEY: &str = "config";
/// Pub/sub channel on which the writer publishes the new version, below the prefix.
pub const CHANGED_CHANNEL: &str = "config:changed";
/// Hash `replica id → applied version`, below the prefix.
pub const APPLIED_KEY: &str = "config:applied";

/// The whole document. Unknown fields are ignored so that an older app keeps reading a
/// document written by a newer operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Monotonic version; 0 means "no document, built-in defaults".
    pub version: u64,
    /// Waiting-room settings by queue id.
    #[serde(default)]
    pub queues: BTreeMap<String, QueueSettings>,
    #[serde(default)]
    #[cfg_attr(
        feature = "kube",
        schemars(description = "Circuit-breaker settings per dependency of the app.")
    )]
    pub circuit_breakers: CircuitBreakers,
    #[serde(default)]
    #[cfg_attr(
        feature = "kube",
        schemars(description = "TTLs of the app's short-lived records.")
    )]
    pub ttls: Ttls,
}

/// One virtual waiting room (the `QueueConfig` spec without its id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct QueueSettings {
    /// Admitted sessions allowed at once.
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_active_users: u32,
    /// New admissions per minute while below `max_active_users`.
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub admit_per_minute: u32,
    /// How long an admitted user may shop.
    pub session_ttl: Dur,
    /// How long a waiting place is kept.
    pub token_ttl: Dur,
    /// A waiting user who stops polling for this long loses the place.
    pub abandon_after: Dur,
    #[cfg_attr(
        feature = "kube",
        schemars(
            description = "Order of admission: fifo (first come, first served) or random (everyone who joined before opensAt is shuffled at opening)."
        )
    )]
    pub queueing: Queueing,
    /// Before this instant users may join but nobody is admitted.
    pub opens_at: Option<DateTime<Utc>>,
    /// After this instant new joins are refused.
    pub closes_at: Option<DateTime<Utc>>,
    /// Stop admitting without losing anyone's place.
    pub paused: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_active_users: 500,
            admit_per_minute: 600,
            session_ttl: Dur::from_secs(600),
            token_ttl: Dur::from_secs(7200),
            abandon_after: Dur::from_secs(300),
            queueing: Queueing::Fifo,
            opens_at: None,
            closes_at: None,
            paused: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Queueing {
    /// First come, first served.
    #[default]
    Fifo,
    /// Everyone who joined before `opens_at` is shuffled at opening; later joins queue FIFO.
    Random,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitBreakers {
    #[cfg_attr(
        feature = "kube",
        schemars(description = "Breaker around PostgreSQL calls.")
    )]
    pub postgres: BreakerSettings,
    #[cfg_attr(
        feature = "kube",
        schemars(description = "Breaker around Redis calls.")
    )]
    pub redis: BreakerSettings,
}

/// resilience4j's circuit-breaker vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct BreakerSettings {
    /// Percentage of failed calls (0 < x ≤ 100) at or above which the breaker opens.
    #[cfg_attr(feature = "kube", schemars(range(min = 1, max = 100)))]
    pub failure_rate_threshold: f64,
    /// Percentage of slow calls (0 < x ≤ 100) at or above which the breaker opens.
    #[cfg_attr(feature = "kube", schemars(range(min = 1, max = 100)))]
    pub slow_call_rate_threshold: f64,
    /// A call slower than this counts as slow.
    pub slow_call_duration: Dur,
    #[cfg_attr(
        feature = "kube",
        schemars(
            description = "The window of calls the failure and slow-call rates are computed over."
        )
    )]
    pub sliding_window: SlidingWindow,
    /// Calls the window must hold before rates are evaluated.
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub minimum_calls: u32,
    /// How long the breaker stays open before letting trial calls through.
    pub wait_in_open: Dur,
    /// Trial calls allowed in the half-open state.
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub permitted_in_half_open: u32,
    #[cfg_attr(
        feature = "kube",
        schemars(
            description = "auto (opens and closes from the measured rates), forced-open (refuses every call) or disabled (lets every call through)."
        )
    )]
    pub state: BreakerState,
}

impl Default for BreakerSettings {
    /// The settings of the concert report (COUNT_BASED 100, min 50, 50 %, 30 s, 10 half-open).
    fn default() -> Self {
        Self {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration: Dur::from_secs(2),
            sliding_window: SlidingWindow::default(),
            minimum_calls: 50,
            wait_in_open: Dur::from_secs(30),
            permitted_in_half_open: 10,
            state: BreakerState::Auto,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SlidingWindow {
    /// `count`: the last `size` calls; `time`: the calls of the last `size` seconds.
    #[serde(rename = "type")]
    pub kind: SlidingWindowType,
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    #[cfg_attr(
        feature = "kube",
        schemars(description = "Calls (type count) or seconds (type time) the window holds.")
    )]
    pub size: u32,
}

impl Default for SlidingWindow {
    fn default() -> Self {
        Self {
            kind: SlidingWindowType::Count,
            size: 100,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum SlidingWindowType {
    Count,
    Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Opens and closes from the measured rates.
    #[default]
    Auto,
    /// Refuses every call (maintenance, or a known-bad dependency).
    ForcedOpen,
    /// Lets every call through and records nothing.
    Disabled,
}

/// TTLs of the app's short-lived records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", default)]
pub struct Ttls {
    #[cfg_attr(
        feature = "kube",
        schemars(description = "How long catalog reads stay cached.")
    )]
    pub catalog_cache: Dur,
    #[cfg_attr(
        feature = "kube",
        schemars(description = "How long a seat or stock hold lasts before it is released.")
    )]
    pub seat_hold: Dur,
    #[cfg_attr(
        feature = "kube",
        schemars(description = "How long a waiting-room token is valid.")
    )]
    pub queue_token: Dur,
    #[cfg_attr(
        feature = "kube",
        schemars(description = "How long an admitted session lasts.")
    )]
    pub admitted_session: Dur,
    #[cfg_attr(
        feature = "kube",
        schemars(description = "How long Idempotency-Key records are kept.")
    )]
    pub idempotency: Dur,
}

impl Default for Ttls {
    fn default() -> Self {
        Self {
            catalog_cache: Dur::from_secs(60),
            seat_hold: Dur::from_secs(300),
            queue_token: Dur::from_secs(7200),
            admitted_session: Dur::from_secs(600),
            idempotency: Dur::from_secs(86_400),
        }
    }
}

/// Why a document was rejected; every problem found, each with its JSON path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("runtime config is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("runtime config is invalid: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// True when `id` is a valid queue id: 1–63 characters of `a-z`, `0-9` and `-`, starting with
/// a letter or digit (a DNS label, so it can name a `QueueConfig` too).
pub fn is_valid_queue_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

impl RuntimeConfig {
    /// Parses and validates a document; any problem rejects the whole document.
    pub fn parse(json: &str) -> Result<Self, ConfigError> {
        let cfg: Self =
            serde_json::from_str(json).map_err(|e| ConfigError::Malformed(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The settings of one queue, or the defaults when the document does not name it.
    pub fn queue(&self, id: &str) -> QueueSettings {
        self.queues.get(id).cloned().unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for (id, q) in &self.queues {
            if !is_valid_queue_id(id) {
                problems.push(format!(
                    "queues.{id}: queue id must be 1-63 characters of a-z, 0-9 and '-'"
                ));
            }
            q.collect_problems(&format!("queues.{id}"), &mut problems);
        }
        self.circuit_breakers
            .postgres
            .collect_problems("circuitBreakers.postgres", &mut problems);
        self.circuit_breakers
            .redis
            .collect_problems("circuitBreakers.redis", &mut problems);
        self.ttls.collect_problems(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

impl QueueSettings {
    pub fn collect_problems(&self, at: &str, problems: &mut Vec<String>) {
        if self.max_active_users == 0 {
            problems.push(format!("{at}.maxActiveUsers must be at least 1"));
        }
        if self.admit_per_minute == 0 {
            problems.push(format!("{at}.admitPerMinute must be at least 1"));
        }
        for (name, d) in [
            ("sessionTtl", self.session_ttl),
            ("tokenTtl", self.token_ttl),
            ("abandonAfter", self.abandon_after),
        ] {
            if d.as_millis() < 1_000 {
                problems.push(format!("{at}.{name} must be at least 1s"));
            }
        }
        if let (Some(open), Some(close)) = (self.opens_at, self.closes_at)
            && close <= open
        {
            problems.push(format!("{at}.closesAt must be after opensAt"));
        }
    }
}

impl BreakerSettings {
    pub fn collect_problems(&self, at: &str, problems: &mut Vec<String>) {
        for (name, v) in [
            ("failureRateThreshold", self.failure_rate_threshold),
            ("slowCallRateThreshold", self.slow_call_rate_threshold),
        ] {
            if !(v > 0.0 && v <= 100.0) {
                problems.push(format!("{at}.{name} must be in (0, 100], got {v}"));
            }
        }
        if self.sliding_window.size == 0 {
            problems.push(format!("{at}.slidingWindow.size must be at least 1"));
        }
        if self.minimum_calls == 0 {
            problems.push(format!("{at}.minimumCalls must be at least 1"));
        }
        if self.permitted_in_half_open == 0 {
            problems.push(format!("{at}.permittedInHalfOpen must be at least 1"));
        }
        if self.slow_call_duration.as_millis() == 0 {
            problems.push(format!("{at}.slowCallDuration must be positive"));
        }
        if self.wait_in_open.as_millis() == 0 {
            problems.push(format!("{at}.waitInOpen must be positive"));
        }
    }
}

impl Ttls {
    fn collect_problems(&self, problems: &mut Vec<String>) {
        for (name, d) in [
            ("catalogCache", self.catalog_cache),
            ("seatHold", self.seat_hold),
            ("queueToken", self.queue_token),
            ("admittedSession", self.admitted_session),
            ("idempotency", self.idempotency),
        ] {
            if d.as_millis() < 1_000 {
                problems.push(format!("ttls.{name} must be at least 1s"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_means_defaults() {
        let cfg = RuntimeConfig::parse(r#"{"version": 3}"#).unwrap();
        assert_eq!(cfg.version, 3);
        assert_eq!(cfg.ttls, Ttls::default());
        assert_eq!(cfg.queue("anything"), QueueSettings::default());
    }

    #[test]
    fn full_document_round_trips() {
        let mut cfg = RuntimeConfig {
            version: 7,
            ..Default::default()
        };
        cfg.queues.insert(
            "concert-42".into(),
            QueueSettings {
                max_active_users: 50,
                paused: true,
                ..Default::default()
            },
        );
        cfg.circuit_breakers.redis.state = BreakerState::ForcedOpen;
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains(r#""maxActiveUsers":50"#), "{json}");
        assert!(json.contains(r#""state":"forced-open""#), "{json}");
        assert_eq!(RuntimeConfig::parse(&json).unwrap(), cfg);
    }

    #[test]
    fn invalid_documents_are_rejected_whole_with_every_problem() {
        let json = r#"{"version": 2,
            "queues": {"Bad Id": {"maxActiveUsers": 0},
                       "ok": {"opensAt": "2026-12-24T10:00:00Z", "closesAt": "2026-12-24T09:00:00Z"}},
            "circuitBreakers": {"postgres": {"failureRateThreshold": 150}}}"#;
        let ConfigError::Invalid(problems) = RuntimeConfig::parse(json).unwrap_err() else {
            panic!("expected Invalid");
        };
        let all = problems.join("\n");
        assert!(all.contains("queues.Bad Id: queue id"), "{all}");
        assert!(all.contains("queues.Bad Id.maxActiveUsers"), "{all}");
        assert!(all.contains("queues.ok.closesAt"), "{all}");
        assert!(
            all.contains("circuitBreakers.postgres.failureRateThreshold"),
            "{all}"
        );
    }

    #[test]
    fn malformed_documents_are_rejected() {
        assert!(matches!(
            RuntimeConfig::parse("not json"),
            Err(ConfigError::Malformed(_))
        ));
        assert!(matches!(
            RuntimeConfig::parse(r#"{"version": 1, "ttls": {"seatHold": "five minutes"}}"#),
            Err(ConfigError::Malformed(_))
        ));
        assert!(matches!(
            RuntimeConfig::parse(r#"{"queues": {}}"#),
            Err(ConfigError::Malformed(_))
        ));
    }
}
