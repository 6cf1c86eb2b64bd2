//! The Redis side of act: the memory settings (`CONFIG SET`) and the runtime document
//! (`<prefix>config`, compare-and-set, publish, applied-by count). One multiplexed
//! connection (a single node's `ConnectionManager`, or a Redis Cluster's, chosen by
//! `FLOODGATE_REDIS_MODE`) that reconnects by itself after a restart or a failover.

pub mod memory;
pub mod runtime_doc;

use std::sync::{Arc, atomic::AtomicU64};

pub use floodgate_crds::redis_conn::RedisTls;
use floodgate_crds::redis_conn::{RedisConn, RedisMode, Timeouts};

/// How the operator reaches its Redis (the flags), so a Campaign's Secret-held credentials
/// can reach the same nodes.
#[derive(Clone, Debug, Default)]
pub struct RedisAddress {
    pub mode: RedisMode,
    /// One URL, or a cluster's comma-separated seeds.
    pub urls: String,
    pub tls: RedisTls,
}

/// A Redis plus the key prefix the app uses in it.
#[derive(Clone)]
pub struct RedisTarget {
    pub conn: RedisConn,
    pub prefix: String,
    /// The highest runtime-document version this process wrote or read (shared by clones),
    /// so a lost document is re-asserted above it ([`runtime_doc::publish`]).
    pub last_version: Arc<AtomicU64>,
    pub address: RedisAddress,
}

impl RedisTarget {
    pub async fn connect(mode: RedisMode, url: &str, prefix: &str) -> redis::RedisResult<Self> {
        Self::connect_tls(mode, url, &RedisTls::default(), prefix).await
    }

    /// Connects now (fails when Redis does not answer), `rediss://` URLs with `tls`'s files.
    pub async fn connect_tls(
        mode: RedisMode,
        url: &str,
        tls: &RedisTls,
        prefix: &str,
    ) -> redis::RedisResult<Self> {
        let timeouts = Timeouts {
            connect: std::time::Duration::from_secs(2),
            response: std::time::Duration::from_secs(5),
        };
        let conn = RedisConn::connect(mode, url, timeouts, tls).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            last_version: Arc::default(),
            address: RedisAddress {
                mode,
                urls: url.to_owned(),
                tls: tls.clone(),
            },
        })
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Real-Redis test helpers: `REDIS_URL` (default `redis://127.0.0.1:63799`), a unique
    //! prefix per test, and a failure (not a skip) when Redis is unreachable.

    use super::{RedisMode, RedisTarget};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Settings on the shared Redis are global: tests that change or compare them hold this
    /// (and put old values back).
    pub static CONFIG_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    pub fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:63799".to_owned())
    }

    pub fn unique_prefix(test: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "fgtest:{}:{}:{test}:",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub async fn target(test: &str) -> RedisTarget {
        RedisTarget::connect(RedisMode::Single, &url(), &unique_prefix(test))
            .await
            .unwrap_or_else(|e| panic!("Redis at {} is required for this test: {e}", url()))
    }
}
