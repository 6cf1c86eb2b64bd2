//! Cache-aside for the two hot ticketing reads (a concert's schedules, a schedule's seats),
//! serving pre-serialized JSON bytes from Redis.
//!
//! Entries are versioned: a family (one schedule, one concert) has a version counter and
//! entries live under `…:<version>:<variant>`. Every hold, release and sale bumps the
//! versions after its commit, so a reader that loaded from the database before the commit
//! writes its now-stale bytes under a version nobody reads any more. An entry also never
//! outlives the earliest live hold it shows, so an expired hold reads as free even before the
//! sweeper runs. Concurrent misses share one database load. Redis failures fall through to
//! the database.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use redis::Script;
use tokio::sync::OnceCell;

use super::types::{ConcertId, ScheduleId};
use crate::{error::ApiError, platform::metrics::CacheLabels, state::AppState};

static READ: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("cache_read.lua")));

/// Loads in progress, by entry key (the Redis prefix keeps apps in one process apart).
static FLIGHTS: LazyLock<Mutex<HashMap<String, Arc<OnceCell<Bytes>>>>> =
    LazyLock::new(Default::default);

/// A cache family: `{cat:s42}` (a schedule's seats) or `{cat:c7}` (a concert's schedules).
pub struct Family(String);

impl Family {
    pub fn seats(id: ScheduleId) -> Self {
        Self(format!("{{cat:s{id}}}"))
    }

    pub fn schedules(id: ConcertId) -> Self {
        Self(format!("{{cat:c{id}}}"))
    }
}

/// How long an entry may live: the catalog TTL, cut short by the earliest live hold expiry.
pub fn entry_ttl(
    catalog: Duration,
    next_expiry: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let ttl = match next_expiry {
        Some(e) => catalog.min((e - now).to_std().unwrap_or(Duration::ZERO)),
        None => catalog,
    };
    // sub-millisecond is not worth a round trip
    (ttl >= Duration::from_millis(1)).then_some(ttl)
}

/// The bytes of `family`/`variant`, or those built by `load` (which also returns the earliest
/// live hold expiry in what it read).
pub async fn get_or_load<F, Fut>(
    state: &AppState,
    cache: &'static str,
    family: &Family,
    variant: &str,
    load: F,
) -> Result<Bytes, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(Bytes, Option<DateTime<Utc>>), ApiError>>,
{
    let count = |result: &'static str| {
        state
            .metrics
            .cache_requests
            .get_or_create(&CacheLabels { cache, result })
            .inc()
    };
    let ver_key = state.redis.key(&format!("{}:ver", family.0));
    let prefix = state.redis.key(&format!("{}:", family.0));
    let suffix = format!(":{variant}");
    let mut conn = state.redis.conn();
    let read: Result<(String, Option<Vec<u8>>), _> = READ
        .key(&ver_key)
        .arg(&prefix)
        .arg(&suffix)
        .invoke_async(&mut conn)
        .await;
    let version = match read {
        Ok((_, Some(bytes))) => {
            count("hit");
            return Ok(Bytes::from(bytes));
        }
        Ok((version, None)) => Some(version),
        Err(e) => {
            tracing::debug!(error = %e, "cache read failed; reading the database");
            None
        }
    };
    count("miss");
    // One loader per entry in this process: concurrent misses of the same version await the
    // first loader's bytes instead of each querying PostgreSQL (stampede protection).
    let flight_key = format!("{prefix}{}{suffix}", version.as_deref().unwrap_or("-"));
    let cell = FLIGHTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(flight_key.clone())
        .or_default()
        .clone();
    let loaded = cell
        .get_or_try_init(|| async {
            let (bytes, next_expiry) = load().await?;
            if let Some(version) = version {
                let catalog = state.runtime.get().ttls.catalog_cache.as_duration();
                if let Some(ttl) = entry_ttl(catalog, next_expiry, Utc::now()) {
                    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                    let key = format!("{prefix}{version}{suffix}");
                    let filled: Result<(), _> = redis::cmd("SET")
                        .arg(&key)
                        .arg(bytes.as_ref())
                        .arg("PX")
                        .arg(ms)
                        .query_async(&mut conn)
                        .await;
                    if let Err(e) = filled {
                        tracing::debug!(error = %e, "cache fill failed");
                    }
                }
            }
            Ok::<_, ApiError>(bytes)
        })
        .await
        .cloned();
    let mut flights = FLIGHTS.lock().unwrap_or_else(PoisonError::into_inner);
    if flights
        .get(&flight_key)
        .is_some_and(|c| Arc::ptr_eq(c, &cell))
    {
        flights.remove(&flight_key);
    }
    loaded
}

/// Bumps the versions after a committed change to a schedule's seats. A failure is logged:
/// entries still expire by their TTL, and never outlive a hold they show.
pub async fn invalidate(state: &AppState, schedule: ScheduleId, concert: ConcertId) {
    let mut conn = state.redis.conn();
    let day = 86_400;
    let mut pipe = redis::pipe();
    for f in [Family::seats(schedule), Family::schedules(concert)] {
        let key = state.redis.key(&format!("{}:ver", f.0));
        pipe.incr(&key, 1).ignore().expire(&key, day).ignore();
    }
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        tracing::warn!(error = %e, schedule = schedule.0, "cache invalidation failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_never_outlive_the_next_hold_expiry() {
        let now = Utc::now();
        let catalog = Duration::from_secs(60);
        assert_eq!(entry_ttl(catalog, None, now), Some(catalog));
        assert_eq!(
            entry_ttl(catalog, Some(now + chrono::Duration::seconds(5)), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            entry_ttl(catalog, Some(now - chrono::Duration::seconds(5)), now),
            None
        );
    }
}
