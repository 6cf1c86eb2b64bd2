//! The process's one multiplexed Redis connection (a single node or a Redis Cluster, see
//! `floodgate_crds::redis_conn`), its key prefix, and the guarded handle every request path
//! goes through.
//!
//! Every key is `<prefix><rest>`; callers put the entity in a hash tag (`{q:concert-42}`) so
//! the keys one Lua script touches share a cluster slot. Each keyspace has one home for its
//! key format (a small key type next to its store: `queue::store::QueueKeys`,
//! `goods::soldout::GateKeys`, `coupons::keys::CampaignKeys`, `platform::cache`'s family
//! keys, ...), built from [`Redis::key`] or [`Redis::prefix`].

use std::{sync::Arc, time::Duration};

pub use floodgate_crds::redis_conn::RedisConn;
use floodgate_crds::redis_conn::{RedisMode, Timeouts, node_urls};
use redis::{Client, RedisResult};
use secrecy::ExposeSecret;

use super::{batch::Batcher, resilience::Breakers};
use crate::{
    config::Settings,
    error::{ApiError, ApiResult, Dependency},
};

/// Redis as request paths see it: every call runs under the Redis breaker (refused at once
/// while it is open), inside its bulkhead and within the call deadline, and is counted in
/// `floodgate_circuit_calls_total{dependency="redis"}`. As with `platform::db::Db`, there is
/// no `Deref` to the connection: a call that bypasses the guard has to say so, with
/// [`Redis::unguarded`] (background loops with their own retry, the runtime-config reader)
/// or [`Redis::raw_conn`] (tests and admin tools).
#[derive(Clone)]
pub struct Redis {
    link: Arc<Link>,
    /// `None` only on a handle that opted out with [`Redis::unguarded`] or
    /// [`Redis::connect_unguarded`].
    breakers: Option<Arc<Breakers>>,
}

struct Link {
    /// One client per node URL (one for a single node, the seeds of a cluster), for the few
    /// things that need their own connection (pub/sub).
    nodes: Arc<[Client]>,
    conn: RedisConn,
    batch: Batcher,
    prefix: Box<str>,
}

impl Redis {
    /// Connects lazily and reconnects by itself, so the app starts (not ready) while Redis is
    /// down and recovers when it returns. `FLOODGATE_REDIS_MODE` picks a single node or a
    /// Redis Cluster (`REDIS_URL` then lists seed nodes). Calls go through `breakers.redis`.
    pub fn connect(settings: &Settings, breakers: Arc<Breakers>) -> RedisResult<Self> {
        Ok(Self {
            breakers: Some(breakers),
            ..Self::connect_unguarded(settings)?
        })
    }

    /// [`Self::connect`] without a breaker, for tools and tests that talk to Redis directly.
    pub fn connect_unguarded(settings: &Settings) -> RedisResult<Self> {
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
            .collect::<RedisResult<Arc<[Client]>>>()?;
        let link = Link {
            nodes,
            batch: Batcher::new(conn.clone()),
            conn,
            prefix: settings.redis_prefix.as_str().into(),
        };
        Ok(Self {
            link: Arc::new(link),
            breakers: None,
        })
    }

    /// The same connection without the breaker, bulkhead or deadline: for background loops
    /// that retry on their own and must not take a request's bulkhead slot (queue admission,
    /// leases, the runtime-config reader, which must read the config that closes a forced-open
    /// breaker). Errors become a 503 without the WARN log of a request's failure.
    pub fn unguarded(&self) -> Self {
        Self {
            link: self.link.clone(),
            breakers: None,
        }
    }

    /// Runs `op` on the multiplexed connection under the breaker, the bulkhead and the
    /// deadline (see the type's documentation).
    pub async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut RedisConn) -> RedisResult<T>,
    ) -> ApiResult<T> {
        let mut conn = self.link.conn.clone();
        Box::pin(self.guard(async { op(&mut conn).await })).await
    }

    /// Like [`Self::run`], with concurrent single commands coalesced into pipelines (see
    /// [`super::batch`]): for hot commands issued by many requests at once.
    pub async fn batched<T>(
        &self,
        op: impl AsyncFnOnce(&Batcher) -> RedisResult<T>,
    ) -> ApiResult<T> {
        Box::pin(self.guard(op(&self.link.batch))).await
    }

    /// Callers box it: a guarded call's future is about a kilobyte and more (the client's and
    /// the breaker's states), and inline it would be copied at every level above it.
    async fn guard<T>(&self, call: impl Future<Output = RedisResult<T>>) -> ApiResult<T> {
        // pinned here, so the breaker's levels below pass a pointer on, not a copy of `call`
        // each (an argument moved through five async levels is kept five times)
        let call = std::pin::pin!(call);
        match &self.breakers {
            Some(b) => b.redis.run(async { Ok(call.await?) }).await,
            None => call.await.map_err(|e| {
                ApiError::unavailable(format!("redis call failed: {e}"))
                    .failure_of(Dependency::Redis)
            }),
        }
    }

    /// An unguarded handle with `prefix` that connects on first use only (unit tests of key
    /// formats).
    #[cfg(test)]
    pub(crate) fn lazy_for_tests(prefix: &str) -> Self {
        let mut settings = Settings::defaults();
        settings.redis_prefix = prefix.to_owned();
        Self::connect_unguarded(&settings).expect("a lazy connection")
    }

    /// The raw multiplexed connection, outside every guard: tests and admin tools only.
    pub fn raw_conn(&self) -> RedisConn {
        self.link.conn.clone()
    }

    pub fn mode(&self) -> RedisMode {
        self.link.conn.mode()
    }

    /// Clients of the configured nodes, for the few things that need their own connection
    /// (pub/sub: classic PUBLISH reaches every node of a cluster, so any one will do).
    pub fn nodes(&self) -> &[Client] {
        &self.link.nodes
    }

    pub fn prefix(&self) -> &str {
        &self.link.prefix
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.link.prefix)
    }

    /// PING with a short deadline, for readiness: outside the breaker on purpose, so a
    /// forced-open breaker does not make Redis itself look down.
    pub async fn ping(&self) -> bool {
        let mut conn = self.raw_conn();
        matches!(
            tokio::time::timeout(Duration::from_secs(1), conn.ping()).await,
            Ok(Ok(()))
        )
    }
}

#[cfg(test)]
mod tests {
    use floodgate_crds::runtime::{BreakerState, RuntimeConfig};

    use super::*;
    use crate::platform::{metrics::Metrics, resilience::CallLimits};

    /// A handle on a port nothing listens on, its Redis breaker forced open.
    fn forced_open() -> Redis {
        let mut cfg = RuntimeConfig::default();
        cfg.circuit_breakers.redis.state = BreakerState::ForcedOpen;
        let limits = CallLimits {
            timeout: Duration::from_secs(2),
            bulkhead: 4,
        };
        let breakers = Breakers::new(&cfg.into(), &Arc::new(Metrics::new()), limits, limits);
        let mut settings = Settings::defaults();
        settings.redis_url = "redis://127.0.0.1:1".to_owned().into();
        Redis::connect(&settings, Arc::new(breakers)).unwrap()
    }

    #[tokio::test]
    async fn every_call_goes_through_the_breaker_unless_it_opts_out() {
        let redis = forced_open();
        let refused = redis
            .run(async |c| redis::cmd("PING").query_async::<String>(c).await)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), crate::platform::resilience::CIRCUIT_OPEN);
        let batched = redis
            .batched(async |b| b.query::<String>(redis::cmd("PING")).await)
            .await
            .unwrap_err();
        assert_eq!(batched.kind(), crate::platform::resilience::CIRCUIT_OPEN);
        // the explicit opt-out reaches for Redis itself (and finds nothing there)
        let tried = redis
            .unguarded()
            .run(async |c| redis::cmd("PING").query_async::<String>(c).await)
            .await
            .unwrap_err();
        assert_ne!(tried.kind(), crate::platform::resilience::CIRCUIT_OPEN);
        assert_eq!(tried.failed_dependency(), Some(Dependency::Redis));
    }
}
