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
    pub async fn hold(&self, redis: &Redis) -> bool {
        let mut conn = redis.conn();
        let ttl = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(2_000);
        match TAKE
            .key(&self.key)
            .arg(&self.holder)
            .arg(ttl)
            .invoke_async::<i64>(&mut conn)
            .await
        {
            Ok(held) => held == 1,
            Err(e) => {
                tracing::debug!(error = %e, key = %self.key, "lease check failed");
                false
            }
        }
    }

    pub async fn release(&self, redis: &Redis) {
        let mut conn = redis.conn();
        let _ = RELEASE
            .key(&self.key)
            .arg(&self.holder)
            .invoke_async::<i64>(&mut conn)
            .await;
    }
}
