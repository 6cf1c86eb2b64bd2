//! The cache's Redis side: the keys of a family, the read, the generation-checked fill and
//! the invalidation, each one guarded call (`platform::redis::Redis::run`).

use std::{sync::LazyLock, time::Duration};

use redis::Script;

use super::flight::Seen;
use crate::{error::ApiResult, platform::redis::Redis};

static FILL: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/cache_fill.lua")));
static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/cache_invalidate.lua")));

/// A family's hash of cached fields and its generation counter, under one hash tag
/// (`<prefix>{c:<family>}:data` and `:gen`) so each script touches one cluster slot.
pub struct FamilyKeys {
    data: String,
    generation: String,
}

impl FamilyKeys {
    pub fn new(redis: &Redis, family: &str) -> Self {
        Self {
            data: redis.key(&format!("{{c:{family}}}:data")),
            generation: redis.key(&format!("{{c:{family}}}:gen")),
        }
    }
}

/// What the read found in Redis.
pub enum Read {
    Hit(Vec<u8>),
    /// A miss, with the generation a fill must still find.
    Miss(Seen),
}

/// A plain `HGET` of the field; only a miss reads the generation, with the field again in
/// the same pipeline: a fill may have landed since the first read (its flight already gone),
/// and taking it keeps concurrent misses on one load.
pub async fn read(redis: &Redis, keys: &FamilyKeys, field: &str) -> ApiResult<Read> {
    let hget = || {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&keys.data).arg(field);
        cmd
    };
    redis
        .batched(async |batch| {
            if let Some(hit) = batch.query(hget()).await? {
                return Ok(Read::Hit(hit));
            }
            let mut get = redis::cmd("GET");
            get.arg(&keys.generation);
            let (hit, generation) = tokio::try_join!(
                batch.query::<Option<Vec<u8>>>(hget()),
                batch.query::<Option<String>>(get),
            )?;
            Ok(match hit {
                Some(hit) => Read::Hit(hit),
                None => Read::Miss(Seen::Generation(generation)),
            })
        })
        .await
}

/// Stores `bytes` for `keep` unless a write bumped the generation since `generation` was
/// read (the fill script compares it; `''` stands for "no counter yet").
pub async fn fill(
    redis: &Redis,
    keys: &FamilyKeys,
    field: &str,
    bytes: &[u8],
    keep: Duration,
    generation: Option<&str>,
) -> ApiResult<bool> {
    let mut script = FILL.key(&keys.data);
    script
        .key(&keys.generation)
        .arg(field)
        .arg(bytes)
        .arg(keep.as_millis() as u64)
        .arg(generation.unwrap_or(""));
    let filled: i64 = redis
        .run(async |conn| script.invoke_async(conn).await)
        .await?;
    Ok(filled == 1)
}

/// Bumps the generation (so in-flight loads will not fill) and drops the family.
pub async fn invalidate(redis: &Redis, keys: &FamilyKeys) -> ApiResult<()> {
    let mut script = INVALIDATE.key(&keys.data);
    script.key(&keys.generation);
    redis
        .run(async |conn| script.invoke_async::<i64>(conn).await)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn family_keys_keep_their_format() {
        let redis = Redis::lazy_for_tests("fg:");
        let keys = FamilyKeys::new(&redis, "goods:42");
        assert_eq!(keys.data, "fg:{c:goods:42}:data");
        assert_eq!(keys.generation, "fg:{c:goods:42}:gen");
    }
}
