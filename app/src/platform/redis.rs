//! The process's one multiplexed Redis connection (a single node or a Redis Cluster, see
//! `floodgate_crds::redis_conn`) and its key prefix.
//!
//! Every key is `<prefix><rest>`; callers put the entity in a hash tag (`{q:concert-42}`) so
//! the keys one Lua script touches share a cluster slot.

use std::{sync::Arc, time::Duration};

pub use floodgate_crds::redis_conn::RedisConn;
use floodgate_crds::redis_conn::{RedisMode, Timeouts, node_urls};
use redis::Client;
use secrecy::ExposeSecret;

use super::batch::Batcher;
use crate::config::Settings;

#[derive(Clone)]
pub struct Redis {
    /// One client per node URL (one for a single node, the seeds of a cluster), for the few
    /// things that need their own connection (pub/sub).
    nodes: Arc<[Client]>,
    conn: RedisConn,
    batch: Arc<Batcher>,
    prefix: Arc<str>,
}

impl Redis {
    /// Connects lazily and reconnects by itself, so the app starts (not ready) while Redis is
    /// down and recovers when it returns. `FLOODGATE_REDIS_MODE` picks a single node or a
    /// Redis Cluster (`REDIS_URL` then lists seed nodes).
    pub fn connect(settings: &Settings) -> redis::RedisResult<Self> {
        let urls = settings.redis_url.expose_secret();
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            response: Duration::from_secs(2),
        };
        let tls = super::tls::redis_tls(settings);
        let conn = RedisConn::connect_lazy(settings.redis_mode, urls, timeouts, &tls)?;
        let nodes = node_urls(settings.redis_mode, urls)?
            .iter()
            .map(|u| tls.client(u))
            .collect::<redis::RedisResult<Arc<[Client]>>>()?;
        Ok(Self {
            nodes,
            batch: Arc::new(Batcher::new(conn.clone())),
            conn,
            prefix: settings.redis_prefix.as_str().into(),
        })
    }

    /// A handle on the shared multiplexed connection (cheap to clone).
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    pub fn mode(&self) -> RedisMode {
        self.conn.mode()
    }

    /// The same connection, with concurrent single commands coalesced into pipelines (see
    /// [`super::batch`]): for hot commands issued by many requests at once.
    pub fn batch(&self) -> &Batcher {
        &self.batch
    }

    /// Clients of the configured nodes, for the few things that need their own connection
    /// (pub/sub: classic PUBLISH reaches every node of a cluster, so any one will do).
    pub fn nodes(&self) -> &[Client] {
        &self.nodes
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// PING with a short deadline, for readiness.
    pub async fn ping(&self) -> bool {
        let mut conn = self.conn();
        matches!(
            tokio::time::timeout(Duration::from_secs(1), conn.ping()).await,
            Ok(Ok(()))
        )
    }
}
