//! The runtime-config reader (ARCHITECTURE.md, "Runtime configuration").
//!
//! Reads `<prefix>config`, applies a new version on a `<prefix>config:changed` message or at
//! the latest on the next 2-second poll (pub/sub drops messages while disconnected), swaps
//! the parsed document atomically so requests read it without a lock, rejects an invalid
//! document whole (keeping the last good one) and records what it applied in
//! `<prefix>config:applied` and the `floodgate_runtime_config_version` gauge.
//!
//! A document that disappears (a Redis flush, a failover to a replica without the key) is
//! not an instruction: the last good config stays in force, a warning is logged and
//! `floodgate_runtime_config_missing` is 1 until the operator re-asserts the document (it
//! does on its next resync). Only a replica that never saw a document runs the built-in
//! defaults (version 0).

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use floodgate_crds::runtime::{APPLIED_KEY, CHANGED_CHANNEL, CONFIG_KEY, RuntimeConfig};
use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::{Notify, watch};

use super::{metrics::Metrics, redis::Redis};
use crate::error::ApiResult;

pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The config in force; cloning the handle shares it.
#[derive(Clone, Default)]
pub struct RuntimeConfigHandle(Arc<ArcSwap<RuntimeConfig>>);

impl RuntimeConfigHandle {
    pub fn get(&self) -> Arc<RuntimeConfig> {
        self.0.load_full()
    }

    fn set(&self, cfg: RuntimeConfig) {
        self.0.store(Arc::new(cfg));
    }
}

/// A handle that starts with `cfg` in force (tests, tools).
impl From<RuntimeConfig> for RuntimeConfigHandle {
    fn from(cfg: RuntimeConfig) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(cfg)))
    }
}

/// What one poll did, for logs and tests.
#[derive(Debug, PartialEq, Eq)]
pub enum PollOutcome {
    Unchanged,
    Applied(u64),
    Rejected,
    /// The document disappeared: the last good config stays in force.
    Missing,
}

pub struct Reader {
    handle: RuntimeConfigHandle,
    redis: Redis,
    metrics: Arc<Metrics>,
    replica_id: String,
    /// The raw document last looked at (applied or rejected), so an unchanged or
    /// already-rejected document is neither re-parsed nor re-logged every poll.
    last_raw: Option<String>,
}

impl Reader {
    pub fn new(
        handle: RuntimeConfigHandle,
        redis: Redis,
        metrics: Arc<Metrics>,
        replica_id: String,
    ) -> Self {
        Self {
            handle,
            // outside the Redis breaker: its settings arrive through this reader, so a
            // forced-open breaker must not stop the read of the document that closes it
            redis: redis.unguarded(),
            metrics,
            replica_id,
            last_raw: None,
        }
    }

    pub async fn poll_once(&mut self) -> ApiResult<PollOutcome> {
        let config = self.redis.key(CONFIG_KEY);
        let raw: Option<String> = self.redis.run(async |c| c.get(config).await).await?;
        let outcome = if raw == self.last_raw {
            PollOutcome::Unchanged
        } else {
            self.apply(raw.as_deref())
        };
        self.metrics
            .runtime_config_missing
            .set(i64::from(raw.is_none()));
        self.last_raw = raw;
        let version = self.handle.get().version;
        self.metrics
            .runtime_config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let applied = self.redis.key(APPLIED_KEY);
        let replica = &self.replica_id;
        self.redis
            .run(async |c| c.hset::<_, _, _, ()>(applied, replica, version).await)
            .await?;
        Ok(outcome)
    }

    /// Applies a document that differs from the last one looked at.
    fn apply(&self, raw: Option<&str>) -> PollOutcome {
        let Some(json) = raw else {
            tracing::warn!(
                kept_version = self.handle.get().version,
                "runtime config document missing from Redis; keeping the last good config until it is republished"
            );
            return PollOutcome::Missing;
        };
        match RuntimeConfig::parse(json) {
            Ok(cfg) => {
                let version = cfg.version;
                self.handle.set(cfg);
                tracing::info!(version, "applied runtime config");
                PollOutcome::Applied(version)
            }
            Err(e) => {
                self.metrics.runtime_config_rejected.inc();
                tracing::warn!(error = %e, kept_version = self.handle.get().version, "rejected runtime config");
                PollOutcome::Rejected
            }
        }
    }

    /// Polls every [`POLL_INTERVAL`] and whenever a change is announced, until `shutdown`.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let notify = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(self.redis.clone(), notify.clone()));
        loop {
            if let Err(e) = self.poll_once().await {
                tracing::debug!(error = %e, "runtime config poll failed; keeping current config");
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = notify.notified() => {}
                _ = shutdown.changed() => break,
            }
        }
        listener.abort();
    }
}

/// Wakes the reader on every change announcement; reconnects when the subscription drops.
/// On a cluster, classic PUBLISH reaches every node, so it subscribes on one seed node and
/// moves to the next when that one goes away.
async fn listen(redis: Redis, notify: Arc<Notify>) {
    let channel = redis.key(CHANGED_CHANNEL);
    for node in redis.nodes().iter().cycle() {
        match node.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe(&channel).await.is_ok() {
                    // anything published while we were not subscribed: read it now
                    notify.notify_one();
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        notify.notify_one();
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "runtime config subscription failed"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
