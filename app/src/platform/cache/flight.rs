//! Single flight: one load per family, field and generation seen in this process; the other
//! readers of the same key await its result.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::error::ApiError;

/// The family's generation as the Redis read before a load saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seen {
    /// Redis answered: the counter's value, `None` while the family has none yet (the fill
    /// then sends `''`, as the fill script expects).
    Generation(Option<String>),
    /// Redis did not answer (down, breaker open, an invalidation of ours still pending): the
    /// load falls through under the bulkhead and nothing is filled.
    Unread,
}

/// The generation is part of the flight: a request that starts after a write (and so sees
/// the bumped generation) never joins a load that began before it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FlightKey {
    pub family: String,
    pub field: String,
    pub seen: Seen,
}

type Flight = Arc<OnceCell<Bytes>>;

#[derive(Default)]
pub struct Flights(Mutex<HashMap<FlightKey, Flight>>);

impl Flights {
    /// Loads in progress; zero when idle.
    pub fn len(&self) -> usize {
        self.0.lock().expect("cache lock").len()
    }

    /// `load`'s result, run once for every concurrent request with the same `key`.
    pub async fn run<F, Fut>(&self, key: FlightKey, load: F) -> Result<Bytes, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, ApiError>>,
    {
        let flight = self
            .0
            .lock()
            .expect("cache lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut guard = FlightGuard {
            map: &self.0,
            key,
            flight,
            finished: false,
        };
        let result = guard.flight.get_or_try_init(load).await.cloned();
        guard.finished = true;
        result
    }
}

/// Removes a flight from the map when the request that took part in it goes away, whether
/// it finished or was dropped mid-load: a finished one removes it at once (later readers
/// start from Redis again), a dropped one only if no other request still waits on it (they
/// go on with the load; the last one out removes it).
struct FlightGuard<'a> {
    map: &'a Mutex<HashMap<FlightKey, Flight>>,
    key: FlightKey,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn key(seen: Seen) -> FlightKey {
        FlightKey {
            family: "goods:1".into(),
            field: "v".into(),
            seen,
        }
    }

    #[tokio::test]
    async fn one_load_per_key_and_a_new_generation_never_joins_an_older_load() {
        let flights = Flights::default();
        let loads = AtomicU32::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(Bytes::from_static(b"x"))
        };
        let old = Seen::Generation(Some("1".into()));
        let (a, b, c, d) = tokio::join!(
            flights.run(key(old.clone()), load),
            flights.run(key(old), load),
            flights.run(key(Seen::Generation(Some("2".into()))), load),
            flights.run(key(Seen::Unread), load),
        );
        for r in [a, b, c, d] {
            assert_eq!(r.unwrap(), Bytes::from_static(b"x"));
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            3,
            "the two readers of generation 1 share a load"
        );
        assert_eq!(flights.len(), 0, "finished flights are gone");
    }

    #[tokio::test]
    async fn a_dropped_load_leaves_nothing_behind() {
        let flights = Flights::default();
        let pending = flights.run(key(Seen::Unread), std::future::pending);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(10), pending)
                .await
                .is_err()
        );
        assert_eq!(flights.len(), 0);
    }
}
