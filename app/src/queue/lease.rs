//! A Redis lease: at most one replica at a time runs a given background duty (a queue's
//! admission loop, the hold sweeper). The holder renews it every tick; if the holder dies
//! the lease lapses after its TTL and the next replica to tick takes over, and a replica that
//! stops cleanly gives it up at once.

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use crate::platform::redis::Redis;

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lease.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lease_release.lua")));

/// Long enough to ride out a slow tick, short enough that failover takes seconds.
pub const LEASE_TTL: Duration = Duration::from_secs(2);

pub struct Lease {
    key: String,
    holder: String,
}

impl Lease {
    /// `rest` is the key below the prefix; `holder` must be unique per process.
    pub fn new(redis: &Redis, rest: &str, holder: &str) -> Self {
        Self {
            key: redis.key(rest),
            holder: holder.to_owned(),
        }
    }

    /// Takes or renews the lease; false when another replica holds it or Redis is down.
    /// Outside the Redis breaker (`Redis::unguarded`): a background duty retries every tick
    /// on its own and takes no request's bulkhead slot.
    pub async fn hold(&self, redis: &Redis) -> bool {
        let ttl = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(2_000);
        let mut take = TAKE.key(&self.key);
        take.arg(&self.holder).arg(ttl);
        let redis = redis.unguarded();
        match redis.run(async |c| take.invoke_async::<i64>(c).await).await {
            Ok(held) => held == 1,
            Err(e) => {
                tracing::debug!(error = %e, key = %self.key, "lease check failed");
                false
            }
        }
    }

    /// Gives the lease up (outside the breaker, as [`Self::hold`]); a failure lets it lapse.
    pub async fn release(&self, redis: &Redis) {
        let mut release = RELEASE.key(&self.key);
        release.arg(&self.holder);
        let redis = redis.unguarded();
        let _ = redis
            .run(async |c| release.invoke_async::<i64>(c).await)
            .await;
    }
}
