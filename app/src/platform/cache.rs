//! Redis cache-aside for hot reads, serving pre-serialized JSON bytes.
//!
//! A *family* (`goods:42`, `goods:list`) is a hash of cached fields plus a generation
//! counter, both under one hash tag so each script touches one cluster slot.
//!
//! - Read: a plain `HGET` of the field; a hit is returned as stored bytes. Only a miss reads
//!   the generation (a second round trip with the field again, before the load: any write
//!   that bumped it earlier had committed before the load starts, and any later one fails
//!   the fill).
//! - Miss: one loader per key in this process (the others await its result), then a fill
//!   that only succeeds if the generation is unchanged — a write that committed while we were
//!   loading bumped it, so stale data is never written back after the writer returns.
//! - Invalidate (after the database commit): bump the generation and drop the family, under
//!   the Redis breaker so a write never waits on a Redis that is down. An invalidation that
//!   does not reach Redis is remembered and retried every second; until it lands this
//!   process reads that family from the database, so it never serves its own write's
//!   pre-write copy. (Another replica may, until the retry lands or the entry's TTL passes.)
//! - Redis down (or its breaker open): reads fall through to the loader (still one per key,
//!   and at most `db_fallthrough_limit` loads at once so PostgreSQL is not stampeded),
//!   nothing is filled.
//! - PostgreSQL down (breaker open, or the loader fails with a 503): the last copy this
//!   process saw, up to `stale_max_age` old, is served instead (stale-while-error); with no
//!   copy the read answers 503 at once. Those copies live in a [`StaleStore`] with a hard
//!   bound on entries and bytes (least recently used evicted first).
//! - A load whose request is dropped (client gone, request timeout) leaves nothing behind:
//!   a guard removes its flight when the last request waiting on it goes away.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, LazyLock, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use redis::Script;
use tokio::sync::{OnceCell, Semaphore};

use super::{
    metrics::{CacheLabels, Metrics},
    redis::Redis,
    resilience::{Breakers, is_unavailable},
    stale::{self, StaleBounds, StaleStore, StaleUsage},
};
use crate::error::ApiError;

static FILL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/cache_fill.lua")));
static INVALIDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/cache_invalidate.lua")));

type Flight = Arc<OnceCell<Bytes>>;

/// What to look up: the metrics label, the family and field, and how long to keep a fill.
pub struct Lookup<'a> {
    pub cache: &'static str,
    pub family: &'a str,
    pub field: &'a str,
    pub ttl: Duration,
}

pub struct Cache {
    in_flight: Mutex<HashMap<String, Flight>>,
    breakers: Arc<Breakers>,
    /// Database loads at once while Redis cannot serve (the bulkhead).
    fallthrough: Semaphore,
    fallthrough_wait: Duration,
    /// The last value seen per family and field, for stale-while-error (bounded).
    stale: Mutex<StaleStore>,
    stale_max_age: Duration,
    /// Families whose invalidation has not reached Redis yet; `unsynced_any` keeps the hit
    /// path free of this lock while the set is empty (nearly always).
    unsynced: Mutex<HashSet<String>>,
    unsynced_any: AtomicBool,
}

/// Removes a flight from `in_flight` when the request that took it part goes away, whether
/// it finished or was dropped mid-load: a finished one removes it at once (later readers
/// start from Redis again), a dropped one only if no other request still waits on it (they
/// go on with the load; the last one out removes it).
struct FlightGuard<'a> {
    map: &'a Mutex<HashMap<String, Flight>>,
    key: String,
    flight: Flight,
    finished: bool,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("cache lock");
        let ours = map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight));
        // the map's clone and ours: nobody else waits on it (clones are taken under the lock)
        if ours && (self.finished || Arc::strong_count(&self.flight) == 2) {
            map.remove(&self.key);
        }
    }
}

fn keys(redis: &Redis, family: &str) -> (String, String) {
    let prefix = redis.prefix();
    (
        format!("{prefix}{{c:{family}}}:data"),
        format!("{prefix}{{c:{family}}}:gen"),
    )
}

impl Cache {
    pub fn new(
        breakers: Arc<Breakers>,
        fallthrough: usize,
        fallthrough_wait: Duration,
        stale_max_age: Duration,
        stale_bounds: StaleBounds,
    ) -> Self {
        Self {
            in_flight: Mutex::default(),
            breakers,
            fallthrough: Semaphore::new(fallthrough.max(1)),
            fallthrough_wait,
            stale: Mutex::new(StaleStore::new(stale_bounds)),
            stale_max_age,
            unsynced: Mutex::default(),
            unsynced_any: AtomicBool::new(false),
        }
    }

    fn is_unsynced(&self, family: &str) -> bool {
        self.unsynced_any.load(Ordering::Acquire)
            && self
                .unsynced
                .lock()
                .expect("unsynced lock")
                .contains(family)
    }

    fn remember(&self, family: &str, field: &str, bytes: &Bytes) {
        let now = Instant::now();
        let key = stale::key(family, field);
        let mut stale = self.stale.lock().expect("stale lock");
        // refreshing a copy at most every few seconds keeps hits cheap (a hit still marks
        // it recently used)
        if stale
            .touch(&key)
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(5))
        {
            return;
        }
        stale.put(&key, bytes.clone(), now);
    }

    fn stale_copy(&self, family: &str, field: &str) -> Option<Bytes> {
        let key = stale::key(family, field);
        let mut stale = self.stale.lock().expect("stale lock");
        stale.get(&key, self.stale_max_age, Instant::now())
    }

    /// Stale copies held, in entries and bytes (bounded by `FLOODGATE_STALE_MAX_ENTRIES`
    /// and `FLOODGATE_STALE_MAX_BYTES`).
    pub fn stale_usage(&self) -> StaleUsage {
        self.stale.lock().expect("stale lock").usage()
    }

    /// Loads in progress (one per family, field and generation); zero when idle.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.lock().expect("cache lock").len()
    }

    /// The cached bytes of `family`/`field`, or `load()`'s result (cached for `ttl`). The
    /// loader reads through `state.db`, so it runs under the PostgreSQL breaker and
    /// bulkhead; when it cannot answer (503), the last copy this process served stands in.
    pub async fn get_or_load<F, Fut>(
        &self,
        redis: &Redis,
        metrics: &Metrics,
        lookup: Lookup<'_>,
        load: F,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        self.get_or_load_bounded(redis, metrics, lookup, || async {
            Ok((load().await?, None))
        })
        .await
    }

    /// Like [`Self::get_or_load`], but the loader also says how long what it read may be
    /// served at most (e.g. until the next seat hold it shows expires): the fill keeps the
    /// shorter of that and `ttl`, and a bound of zero is not cached at all.
    pub async fn get_or_load_bounded<F, Fut>(
        &self,
        redis: &Redis,
        metrics: &Metrics,
        lookup: Lookup<'_>,
        load: F,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(Bytes, Option<Duration>), ApiError>>,
    {
        let Lookup {
            cache,
            family,
            field,
            ttl,
        } = lookup;
        let count = |result: &'static str| {
            metrics
                .cache_requests
                .get_or_create(&CacheLabels { cache, result })
                .inc()
        };
        let (data, gen_key) = keys(redis, family);
        let mut conn = redis.conn();
        let read = async {
            if self.is_unsynced(family) {
                // our own write's invalidation is not in Redis yet: its copy may be stale
                return Err(ApiError::unavailable("cache family awaiting invalidation"));
            }
            self.breakers
                .redis
                .run(async {
                    let hget = || {
                        let mut cmd = redis::cmd("HGET");
                        cmd.arg(&data).arg(field);
                        cmd
                    };
                    if let Some(hit) = redis.batch().query(hget()).await? {
                        return Ok::<_, ApiError>(Ok(hit));
                    }
                    // A miss reads the generation, and the field again in the same pipeline:
                    // a fill may have landed since the first read (its flight already gone),
                    // and taking it keeps concurrent misses on one load.
                    let mut get = redis::cmd("GET");
                    get.arg(&gen_key);
                    let (hit, generation) = tokio::try_join!(
                        redis.batch().query::<Option<Vec<u8>>>(hget()),
                        redis.batch().query::<Option<String>>(get),
                    )?;
                    Ok(hit.ok_or(generation))
                })
                .await
        };
        let seen: Option<Option<String>> = match read.await {
            Ok(Ok(hit)) => {
                count("hit");
                let hit = Bytes::from(hit);
                self.remember(family, field, &hit);
                return Ok(hit);
            }
            Ok(Err(generation)) => Some(generation),
            Err(e) => {
                count("error");
                tracing::debug!(error = %e, cache, "cache read failed; loading from the database");
                None
            }
        };
        count("miss");

        // The generation is part of the flight: a request that starts after a write (and so
        // sees the bumped generation) never joins a load that began before it.
        let generation_seen = seen
            .as_ref()
            .map(|g| g.as_deref().unwrap_or(""))
            .unwrap_or("-");
        let flight_key = format!("{family}\u{0}{field}\u{0}{generation_seen}");
        let flight = self
            .in_flight
            .lock()
            .expect("cache lock")
            .entry(flight_key.clone())
            .or_default()
            .clone();
        let mut guard = FlightGuard {
            map: &self.in_flight,
            key: flight_key,
            flight,
            finished: false,
        };
        let result = guard
            .flight
            .get_or_try_init(|| async {
                count("load");
                // Redis cannot serve: the bulkhead bounds how many loads reach PostgreSQL
                let _bulkhead = match seen {
                    Some(_) => None,
                    None => Some(
                        tokio::time::timeout(self.fallthrough_wait, self.fallthrough.acquire())
                            .await
                            .map_err(|_| {
                                ApiError::unavailable(
                                    "too many reads are waiting for the database; retry shortly",
                                )
                            })?
                            .map_err(ApiError::internal)?,
                    ),
                };
                let (bytes, bound) = load().await?;
                let keep = bound.map_or(ttl, |b| b.min(ttl));
                if let Some(generation) = seen.as_ref().filter(|_| keep >= Duration::from_millis(1))
                {
                    let filled = FILL
                        .key(&data)
                        .key(&gen_key)
                        .arg(field)
                        .arg(bytes.as_ref())
                        .arg(keep.as_millis() as u64)
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
        guard.finished = true;
        drop(guard);
        match result {
            Ok(bytes) => {
                self.remember(family, field, &bytes);
                Ok(bytes)
            }
            Err(e) if is_unavailable(&e) => match self.stale_copy(family, field) {
                Some(bytes) => {
                    count("stale");
                    Ok(bytes)
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Drops the families after a write. Errors are not returned (the write already
    /// committed): a family Redis did not take is remembered for [`Self::resync`], and the
    /// generation check keeps in-flight loads from refilling stale data.
    pub async fn invalidate(&self, redis: &Redis, families: &[String]) {
        let mut missed = Vec::new();
        for family in families {
            if let Err(e) = self.invalidate_one(redis, family).await {
                tracing::warn!(error = %e, family, "cache invalidation did not reach redis; retrying every second");
                missed.push(family.clone());
            }
        }
        if !missed.is_empty() {
            self.unsynced.lock().expect("unsynced lock").extend(missed);
            self.unsynced_any.store(true, Ordering::Release);
        }
    }

    async fn invalidate_one(&self, redis: &Redis, family: &str) -> Result<(), ApiError> {
        let (data, gen_key) = keys(redis, family);
        let mut conn = redis.conn();
        self.breakers
            .redis
            .run(async {
                Ok(INVALIDATE
                    .key(&data)
                    .key(&gen_key)
                    .invoke_async::<i64>(&mut conn)
                    .await?)
            })
            .await
            .map(drop)
    }

    /// Retries the invalidations Redis missed (the server runs this every second); stops at
    /// the first failure, Redis is still out.
    pub async fn resync(&self, redis: &Redis) {
        if !self.unsynced_any.load(Ordering::Acquire) {
            return;
        }
        let families: Vec<String> = self
            .unsynced
            .lock()
            .expect("unsynced lock")
            .iter()
            .cloned()
            .collect();
        for family in families {
            if self.invalidate_one(redis, &family).await.is_err() {
                return;
            }
            let mut unsynced = self.unsynced.lock().expect("unsynced lock");
            unsynced.remove(&family);
            if unsynced.is_empty() {
                self.unsynced_any.store(false, Ordering::Release);
            }
        }
        tracing::info!("cache invalidations that missed redis have been applied");
    }
}
