//! The two hot ticketing reads (a concert's schedules, a schedule's seats) on the platform
//! cache-aside layer (`platform::cache`: stored JSON bytes, one loader per key, breakers,
//! stale-while-error), with one rule of their own: an entry never outlives the earliest live
//! hold it shows, so an expired hold reads as free even before the sweeper runs. Every hold,
//! release and sale invalidates both families after its commit.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::types::{ConcertId, ScheduleId};
use crate::{error::ApiError, platform::cache::Lookup, state::AppState};

/// A cache family: `cat:s42` (a schedule's seats) or `cat:c7` (a concert's schedules).
pub struct Family(String);

impl Family {
    pub fn seats(id: ScheduleId) -> Self {
        Self(format!("cat:s{id}"))
    }

    pub fn schedules(id: ConcertId) -> Self {
        Self(format!("cat:c{id}"))
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
    let catalog = state.runtime.get().ttls.catalog_cache.as_duration();
    let lookup = Lookup {
        cache,
        family: &family.0,
        field: variant,
        ttl: catalog,
    };
    state
        .cache
        .get_or_load(&state.redis, &state.metrics, lookup, || async {
            let (bytes, next_expiry) = load().await?;
            Ok((
                bytes,
                Some(entry_ttl(catalog, next_expiry, Utc::now()).unwrap_or(Duration::ZERO)),
            ))
        })
        .await
}

/// Drops both families after a committed change to a schedule's seats. A failure is logged
/// by the cache: entries still expire by their TTL, and never outlive a hold they show.
pub async fn invalidate(state: &AppState, schedule: ScheduleId, concert: ConcertId) {
    let families = [Family::seats(schedule).0, Family::schedules(concert).0];
    state.cache.invalidate(&state.redis, &families).await;
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
