//! Redis cache-aside for hot reads, serving pre-serialized JSON bytes.
//!
//! A *family* (`goods:42`, `goods:list`) is a hash of cached fields plus a generation
//! counter, both under one hash tag so each script touches one cluster slot.
//!
//! - Read: one script returns the field and the generation. A hit is returned as stored bytes.
//! - Miss: one loader per key in this process (the others await its result), then a fill
//!   that only succeeds if the generation is unchanged — a write that committed while we were
//!   loading bumped it, so stale data is never written back after the writer returns.
//! - Invalidate (after the database commit): bump the generation and drop the family.
//! - Redis down: reads fall through to the loader (still one per key), nothing is filled.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use bytes::Bytes;
use redis::Script;
use tokio::sync::OnceCell;

use super::{metrics::{CacheLabels, Metrics}, redis::Redis};
use crate::error::ApiError;

static READ: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cache_read.lua")));
static FILL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cache_fill.lua")));
static INVALIDATE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cache_invalidate.lua")));

type Flight = Arc<OnceCell<Bytes>>;

/// What to look up: the metrics label, the family and field, and how long to keep a fill.
pub struct Lookup<'a> {
    pub cache: &'static str,
    pub family: &'a str,
    pub field: &'a str,
    pub ttl: Duration,
}

#[derive(Default)]
pub struct Cache {
    in_flight: Mutex<HashMap<String, Flight>>,
}

fn keys(redis: &Redis, family: &str) -> (String, String) {
    (redis.key(&format!("{{c:{family}}}:data")), redis.key(&format!("{{c:{family}}}:gen")))
}

impl Cache {
    /// The cached bytes of `family`/`field`, or `load()`'s result (cached for `ttl`).
    pub async fn get_or_load<F, Fut>(&self, redis: &Redis, metrics: &Metrics, lookup: Lookup<'_>, load: F) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        let Lookup { cache, family, field, ttl } = lookup;
        let count = |result: &'static str| metrics.cache_requests.get_or_create(&CacheLabels { cache, result }).inc();
        let (data, gen_key) = keys(redis, family);
        let mut conn = redis.conn();
        let seen: Option<Option<String>> =
            match READ.key(&data).key(&gen_key).arg(field).invoke_async::<(Option<Vec<u8>>, Option<String>)>(&mut conn).await {
                Ok((Some(hit), _)) => {
                    count("hit");
                    return Ok(Bytes::from(hit));
                }
                Ok((None, generation)) => Some(generation),
                Err(e) => {
                    count("error");
                    tracing::debug!(error = %e, cache, "cache read failed; loading from the database");
                    None
                }
            };
        count("miss");

        // The generation is part of the flight: a request that starts after a write (and so
        // sees the bumped generation) never joins a load that began before it.
        let generation_seen = seen.as_ref().map(|g| g.as_deref().unwrap_or("")).unwrap_or("-");
        let flight_key = format!("{family}\u{0}{field}\u{0}{generation_seen}");
        let flight = self.in_flight.lock().expect("cache lock").entry(flight_key.clone()).or_default().clone();
        let result = flight
            .get_or_try_init(|| async {
                count("load");
                let bytes = load().await?;
                if let Some(generation) = &seen {
                    let filled = FILL
                        .key(&data)
                        .key(&gen_key)
                        .arg(field)
                        .arg(bytes.as_ref())
                        .arg(ttl.as_millis() as u64)
                        .arg(generation.as_deref().unwrap_or(""))
                        .invoke_async::<i64>(&mut conn)
                        .await;
                    if let Err(e) = filled {
                        tracing::debug!(error = %e, cache, "cache fill failed");
                    }
                }
                Ok::<_, ApiError>(bytes)
            })
            .await
            .cloned();
        let mut map = self.in_flight.lock().expect("cache lock");
        if map.get(&flight_key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            map.remove(&flight_key);
        }
        result
    }

    /// Drops the families after a write. Errors are logged, not returned: the write already
    /// committed, and the generation check keeps in-flight loads from refilling stale data.
    pub async fn invalidate(&self, redis: &Redis, families: &[String]) {
        let mut conn = redis.conn();
        for family in families {
            let (data, gen_key) = keys(redis, family);
            if let Err(e) = INVALIDATE.key(&data).key(&gen_key).invoke_async::<i64>(&mut conn).await {
                tracing::warn!(error = %e, family, "cache invalidation failed; entries expire by TTL");
            }
        }
    }
}
