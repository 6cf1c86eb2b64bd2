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
//!
//! The parts: [`store`] (the Redis read, fill and invalidation), [`flight`] (single flight),
//! and here the order of it all, the fall-through bulkhead and the stale fallback.

use std::{
    collections::HashSet,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{
    metrics::{CacheLabels, Metrics},
    redis::Redis,
    resilience::is_unavailable,
    stale::{self, StaleBounds, StaleStore, StaleUsage},
};
use crate::error::ApiError;

mod flight;
mod store;

use flight::{FlightKey, Flights, Seen};
use store::{FamilyKeys, Read};

/// What to look up: the metrics label, the family and field, and how long to keep a fill.
pub struct Lookup<'a> {
    pub cache: &'static str,
    pub family: &'a str,
    pub field: &'a str,
    pub ttl: Duration,
}

/// What a loader returns: the bytes, or the bytes and how long they may be served at most.
pub trait Loaded {
    fn into_parts(self) -> (Bytes, Option<Duration>);
}

impl Loaded for Bytes {
    fn into_parts(self) -> (Bytes, Option<Duration>) {
        (self, None)
    }
}

impl Loaded for (Bytes, Option<Duration>) {
    fn into_parts(self) -> (Bytes, Option<Duration>) {
        self
    }
}

pub struct Cache {
    flights: Flights,
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

impl Cache {
    pub fn new(
        fallthrough: usize,
        fallthrough_wait: Duration,
        stale_max_age: Duration,
        stale_bounds: StaleBounds,
    ) -> Self {
        Self {
            flights: Flights::default(),
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
        self.flights.len()
    }

    /// The cached bytes of `family`/`field`, or `load()`'s result (cached for `ttl`). The
    /// loader reads through `state.db`, so it runs under the PostgreSQL breaker and
    /// bulkhead; when it cannot answer (503), the last copy this process served stands in.
    /// A loader may also say how long what it read may be served at most ([`Loaded`], e.g.
    /// until the next seat hold it shows expires): the fill keeps the shorter of that and
    /// `ttl`, and a bound of zero is not cached at all.
    pub async fn get_or_load<F, Fut, T>(
        &self,
        redis: &Redis,
        metrics: &Metrics,
        lookup: Lookup<'_>,
        load: F,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
        T: Loaded,
    {
        let count = |result: &'static str| {
            metrics
                .cache_requests
                .get_or_create(&CacheLabels {
                    cache: lookup.cache,
                    result,
                })
                .inc();
        };
        let keys = FamilyKeys::new(redis, lookup.family);
        let seen = match self.read(redis, &keys, &lookup).await {
            Ok(Read::Hit(hit)) => {
                count("hit");
                let hit = Bytes::from(hit);
                self.remember(lookup.family, lookup.field, &hit);
                return Ok(hit);
            }
            Ok(Read::Miss(seen)) => seen,
            Err(e) => {
                count("error");
                tracing::debug!(error = %e, cache = lookup.cache, "cache read failed; loading from the database");
                Seen::Unread
            }
        };
        count("miss");
        let key = FlightKey {
            family: lookup.family.to_owned(),
            field: lookup.field.to_owned(),
            seen: seen.clone(),
        };
        let result = self
            .flights
            .run(key, || async {
                count("load");
                self.load_and_fill(load, redis, &keys, &lookup, &seen).await
            })
            .await;
        self.served(lookup.family, lookup.field, result, count)
    }

    /// The Redis read, unless our own write's invalidation is not in Redis yet (then its
    /// copy may be stale, and the family is read from the database).
    async fn read(
        &self,
        redis: &Redis,
        keys: &FamilyKeys,
        lookup: &Lookup<'_>,
    ) -> Result<Read, ApiError> {
        if self.is_unsynced(lookup.family) {
            return Err(ApiError::unavailable("cache family awaiting invalidation"));
        }
        store::read(redis, keys, lookup.field).await
    }

    /// One load (under the fall-through bulkhead when Redis could not be read), then a fill
    /// of what it read if Redis answered and the bound allows it. A failed fill is only
    /// logged: the answer stands.
    async fn load_and_fill<F, Fut, T: Loaded>(
        &self,
        load: F,
        redis: &Redis,
        keys: &FamilyKeys,
        lookup: &Lookup<'_>,
        seen: &Seen,
    ) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let _bulkhead = match seen {
            Seen::Generation(_) => None,
            Seen::Unread => Some(self.fallthrough_slot().await?),
        };
        let (bytes, bound) = load().await?.into_parts();
        let keep = bound.map_or(lookup.ttl, |b| b.min(lookup.ttl));
        if let Seen::Generation(generation) = seen
            && keep >= Duration::from_millis(1)
        {
            let filled = store::fill(
                redis,
                keys,
                lookup.field,
                &bytes,
                keep,
                generation.as_deref(),
            );
            if let Err(e) = filled.await {
                tracing::debug!(error = %e, cache = lookup.cache, "cache fill failed");
            }
        }
        Ok(bytes)
    }

    /// Redis cannot serve: the bulkhead bounds how many loads reach PostgreSQL.
    async fn fallthrough_slot(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        tokio::time::timeout(self.fallthrough_wait, self.fallthrough.acquire())
            .await
            .map_err(|_| {
                ApiError::unavailable("too many reads are waiting for the database; retry shortly")
            })?
            .map_err(ApiError::internal)
    }

    /// Remembers a loaded answer; stands the stale copy in for a dependency that could not
    /// answer (stale-while-error).
    fn served(
        &self,
        family: &str,
        field: &str,
        result: Result<Bytes, ApiError>,
        count: impl Fn(&'static str),
    ) -> Result<Bytes, ApiError> {
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
            if let Err(e) = store::invalidate(redis, &FamilyKeys::new(redis, family)).await {
                tracing::warn!(error = %e, family, "cache invalidation did not reach redis; retrying every second");
                missed.push(family.clone());
            }
        }
        if !missed.is_empty() {
            self.unsynced.lock().expect("unsynced lock").extend(missed);
            self.unsynced_any.store(true, Ordering::Release);
        }
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
            if store::invalidate(redis, &FamilyKeys::new(redis, &family))
                .await
                .is_err()
            {
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
