//! Redis memory settings: `CONFIG SET maxmemory / maxmemory-policy`, re-applied every resync
//! because a restarted Redis forgets them, and read back with `CONFIG GET` for the status.

use floodgate_crds::v1alpha1::{MaxmemoryPolicy, RedisApplied};

use super::RedisTarget;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryWanted {
    pub maxmemory: Option<String>,
    pub policy: Option<MaxmemoryPolicy>,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "maxmemory-policy {0} is refused: only noeviction is accepted, because this Redis holds waiting-room places and stock gates and the queue keys (line, sequence, head, waiting count, entry buckets) carry TTLs, so volatile-* policies can evict them as well as allkeys-* ones"
    )]
    Refused(&'static str),
    #[error("Redis CONFIG failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("CONFIG GET {0} returned nothing")]
    Missing(&'static str),
    #[error(
        "the pre-campaign settings could not be read and saved to the status first, so nothing was changed"
    )]
    NotSaved,
}

/// Pure policy check: only `noeviction`. `allkeys-*` would evict stock gates and anything
/// else; `volatile-*` evicts keys with a TTL, and the queue's keys have one (join.lua expires
/// the line, sequence, head, count and entry keys a place-ttl after the last join), so a
/// waiting-room place could disappear under memory pressure either way.
pub fn check(wanted: &MemoryWanted) -> Result<(), MemoryError> {
    match wanted.policy {
        Some(p) if p != MaxmemoryPolicy::Noeviction => Err(MemoryError::Refused(p.as_redis())),
        _ => Ok(()),
    }
}

async fn get(target: &RedisTarget, name: &'static str) -> Result<String, MemoryError> {
    let mut conn = target.conn.clone();
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(&mut conn)
        .await?;
    pair.into_iter().nth(1).ok_or(MemoryError::Missing(name))
}

async fn set(target: &RedisTarget, name: &str, value: &str) -> Result<(), MemoryError> {
    let mut conn = target.conn.clone();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(())
}

/// What Redis runs now.
pub async fn read(target: &RedisTarget) -> Result<RedisApplied, MemoryError> {
    Ok(RedisApplied {
        maxmemory: get(target, "maxmemory").await?,
        maxmemory_policy: get(target, "maxmemory-policy").await?,
    })
}

/// `used_memory` from `INFO memory`: what a restored `maxmemory` must fit above. On a
/// cluster (one reply per node) the largest node's, as `maxmemory` applies per node.
pub async fn used_memory(target: &RedisTarget) -> Result<u64, MemoryError> {
    let mut conn = target.conn.clone();
    let info: redis::Value = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    let per_node: Vec<String> = match info {
        redis::Value::Map(nodes) => nodes
            .into_iter()
            .map(|(_, v)| redis::from_redis_value(v))
            .collect::<Result<_, _>>()
            .map_err(redis::RedisError::from)?,
        single => vec![redis::from_redis_value(single).map_err(redis::RedisError::from)?],
    };
    per_node
        .iter()
        .map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .collect::<Option<Vec<u64>>>()
        .and_then(|all| all.into_iter().max())
        .ok_or(MemoryError::Missing("used_memory"))
}

/// Applies what is wanted (refusing eviction policies that could lose queue state) and
/// returns what Redis reports afterwards.
pub async fn apply(
    target: &RedisTarget,
    wanted: &MemoryWanted,
) -> Result<RedisApplied, MemoryError> {
    check(wanted)?;
    if let Some(m) = &wanted.maxmemory {
        set(target, "maxmemory", m).await?;
    }
    if let Some(p) = wanted.policy {
        set(target, "maxmemory-policy", p.as_redis()).await?;
    }
    read(target).await
}

/// Puts back the settings recorded before the campaign.
pub async fn restore(
    target: &RedisTarget,
    before: &RedisApplied,
) -> Result<RedisApplied, MemoryError> {
    set(target, "maxmemory", &before.maxmemory).await?;
    set(target, "maxmemory-policy", &before.maxmemory_policy).await?;
    read(target).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing;

    use testing::CONFIG_LOCK as SHARED;

    #[tokio::test]
    async fn config_set_is_applied_and_read_back() {
        let _g = SHARED.lock().await;
        let t = testing::target("memory-apply").await;
        let before = read(&t).await.expect("read");
        let wanted = MemoryWanted {
            maxmemory: Some("3gb".into()),
            policy: Some(MaxmemoryPolicy::Noeviction),
        };
        let applied = apply(&t, &wanted).await.expect("apply");
        assert_eq!(
            applied,
            RedisApplied {
                maxmemory: (3u64 << 30).to_string(),
                maxmemory_policy: "noeviction".into()
            }
        );
        let restored = restore(&t, &before).await.expect("restore");
        assert_eq!(restored, before);
    }

    #[tokio::test]
    async fn used_memory_is_read_from_info() {
        let t = testing::target("memory-used").await;
        let used = used_memory(&t).await.expect("INFO memory");
        assert!(used > 0, "a running Redis uses some memory");
    }

    #[tokio::test]
    async fn every_evicting_policy_is_refused_and_nothing_changes() {
        let _g = SHARED.lock().await;
        let t = testing::target("memory-refuse").await;
        let before = read(&t).await.expect("read");
        for p in [
            MaxmemoryPolicy::VolatileLru,
            MaxmemoryPolicy::VolatileLfu,
            MaxmemoryPolicy::VolatileRandom,
            MaxmemoryPolicy::VolatileTtl,
            MaxmemoryPolicy::AllkeysLru,
            MaxmemoryPolicy::AllkeysLfu,
            MaxmemoryPolicy::AllkeysRandom,
        ] {
            let wanted = MemoryWanted {
                maxmemory: Some("5gb".into()),
                policy: Some(p),
            };
            let refused = apply(&t, &wanted).await;
            assert!(
                matches!(&refused, Err(MemoryError::Refused(_))),
                "{p:?}: {refused:?}"
            );
            let why = refused.expect_err("refused").to_string();
            assert!(
                why.contains("only noeviction") && why.contains("TTL"),
                "{why}"
            );
        }
        assert_eq!(
            read(&t).await.expect("read"),
            before,
            "a refused apply must not touch maxmemory either"
        );
    }
}
