//! Which campaign ids exist, as far as this process has seen, and one reload at a time per
//! campaign.
//!
//! Loading a campaign into Redis costs a Redis and a PostgreSQL round trip. Ids PostgreSQL
//! did not know are remembered for [`UNKNOWN_TTL`] and answered 404 before any lock or
//! lookup, so a spray of fake ids costs one lookup per id per [`UNKNOWN_TTL`]. Reloads take
//! a lock of their own campaign only: a genuine reload never queues behind other ids. Ids not
//! known to exist yet share [`LOOKUP_SLOTS`] concurrent PostgreSQL lookups (waiting at most
//! [`LOOKUP_WAIT`]), so fresh fake ids cannot crowd the pool either; ids seen to exist skip
//! that lane. Every map here is bounded: the two memories by [`MEMORY_CAP`] entries (oldest
//! dropped first), the lock map by the reloads in flight (a lock leaves the map with its
//! last holder).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedMutexGuard, Semaphore, SemaphorePermit};

use crate::{
    error::{ApiError, ApiResult},
    platform::ids::CampaignId,
};

/// How long an id PostgreSQL did not know answers 404 without a lookup. A campaign created
/// meanwhile is loaded into Redis by its creation, so the memory is not consulted for it.
pub const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// How long an id seen to exist skips the lookup lane (campaign rows are never deleted).
pub const KNOWN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most ids each memory holds.
pub const MEMORY_CAP: usize = 10_000;
/// Concurrent PostgreSQL lookups of ids not known to exist.
pub const LOOKUP_SLOTS: usize = 4;
/// How long a lookup of an id not known to exist waits for a slot before a 503.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(1);

/// Ids remembered until a deadline; bounded, the oldest dropped first. Pure: time is an
/// argument.
#[derive(Debug)]
pub struct Memory {
    ttl: Duration,
    cap: usize,
    until: HashMap<CampaignId, Instant>,
    /// Insertion order, for expiry and eviction; may hold stale pairs of re-remembered ids.
    order: VecDeque<(CampaignId, Instant)>,
}

impl Memory {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        Self {
            ttl,
            cap: cap.max(1),
            until: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn contains(&self, id: CampaignId, now: Instant) -> bool {
        self.until.get(&id).is_some_and(|u| *u > now)
    }

    pub fn remember(&mut self, id: CampaignId, now: Instant) {
        self.expire(now);
        let until = now + self.ttl;
        if self.until.insert(id, until).is_none() {
            while self.until.len() > self.cap {
                self.evict_oldest();
            }
        }
        self.order.push_back((id, until));
        // stale pairs of re-remembered ids are dropped as they reach the front; bound them too
        if self.order.len() > 2 * self.cap {
            let until = &self.until;
            self.order.retain(|(i, u)| until.get(i) == Some(u));
        }
    }

    pub fn forget(&mut self, id: CampaignId) {
        self.until.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(id, until)) = self.order.front() {
            if until > now && self.until.get(&id) == Some(&until) {
                return;
            }
            self.order.pop_front();
            if until <= now && self.until.get(&id) == Some(&until) {
                self.until.remove(&id);
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((id, until)) = self.order.pop_front() {
            if self.until.get(&id) == Some(&until) {
                self.until.remove(&id);
                return;
            }
        }
    }
}

/// The process's campaign directory (one per `AppState`).
pub struct Directory {
    memories: Mutex<(Memory, Memory)>,
    locks: Arc<Mutex<HashMap<CampaignId, Arc<tokio::sync::Mutex<()>>>>>,
    lookups: Semaphore,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            memories: Mutex::new((
                Memory::new(UNKNOWN_TTL, MEMORY_CAP),
                Memory::new(KNOWN_TTL, MEMORY_CAP),
            )),
            locks: Arc::default(),
            lookups: Semaphore::new(LOOKUP_SLOTS),
        }
    }
}

/// Holds the reload lock of one campaign; the lock leaves the map with its last holder.
pub struct ReloadGuard {
    campaign: CampaignId,
    locks: Arc<Mutex<HashMap<CampaignId, Arc<tokio::sync::Mutex<()>>>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for ReloadGuard {
    fn drop(&mut self) {
        let mutex = self
            .guard
            .take()
            .map(|g| OwnedMutexGuard::mutex(&g).clone());
        let mut locks = lock(&self.locks);
        // the map's reference and ours (the guard just released its own): nobody else waits
        if let Some(m) = mutex
            && Arc::strong_count(&m) <= 2
        {
            locks.remove(&self.campaign);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // plain map operations cannot panic half-way; a poisoned lock holds consistent data
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Directory {
    /// PostgreSQL did not know `campaign` a moment ago.
    pub fn is_unknown(&self, campaign: CampaignId) -> bool {
        lock(&self.memories).0.contains(campaign, Instant::now())
    }

    pub fn remember_unknown(&self, campaign: CampaignId) {
        lock(&self.memories).0.remember(campaign, Instant::now());
    }

    /// `campaign` exists (created or found): it is no longer unknown and skips the lookup lane.
    pub fn remember_known(&self, campaign: CampaignId) {
        let mut m = lock(&self.memories);
        m.0.forget(campaign);
        m.1.remember(campaign, Instant::now());
    }

    /// Looks `campaign` up again on its next load (an admin's rebuild asks for it).
    pub fn forget_unknown(&self, campaign: CampaignId) {
        lock(&self.memories).0.forget(campaign);
    }

    fn is_known(&self, campaign: CampaignId) -> bool {
        lock(&self.memories).1.contains(campaign, Instant::now())
    }

    /// Takes the reload lock of `campaign` (other campaigns' reloads run meanwhile).
    pub async fn reload_lock(&self, campaign: CampaignId) -> ReloadGuard {
        let mutex = lock(&self.locks).entry(campaign).or_default().clone();
        ReloadGuard {
            campaign,
            locks: self.locks.clone(),
            guard: Some(mutex.lock_owned().await),
        }
    }

    /// A slot for a PostgreSQL lookup of `campaign`: none needed if it is known to exist,
    /// otherwise one of [`LOOKUP_SLOTS`], or a 503 after [`LOOKUP_WAIT`].
    pub async fn lookup_slot(
        &self,
        campaign: CampaignId,
    ) -> ApiResult<Option<SemaphorePermit<'_>>> {
        if self.is_known(campaign) {
            return Ok(None);
        }
        match tokio::time::timeout(LOOKUP_WAIT, self.lookups.acquire()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(ApiError::unavailable(
                "too many coupon campaigns are being looked up; retry shortly",
            )
            .retry_after(1)),
        }
    }

    /// Reload locks currently in the map (for tests).
    pub fn locks_held(&self) -> usize {
        lock(&self.locks).len()
    }

    /// Sizes of the unknown and known memories (for tests).
    pub fn remembered(&self) -> (usize, usize) {
        let m = lock(&self.memories);
        (m.0.len(), m.1.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn remembered_ids_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut m = Memory::new(Duration::from_secs(5), 10);
        m.remember(CampaignId(1), t0);
        assert!(m.contains(CampaignId(1), t0 + Duration::from_secs(4)));
        assert!(!m.contains(CampaignId(1), t0 + Duration::from_secs(5)));
        m.remember(CampaignId(2), t0 + Duration::from_secs(6));
        assert_eq!(m.len(), 1, "the expired id left the map");
    }

    #[test]
    fn the_oldest_id_is_dropped_at_the_cap() {
        let t0 = Instant::now();
        let mut m = Memory::new(Duration::from_secs(60), 3);
        for (i, id) in [1, 2, 3, 4].map(CampaignId).into_iter().enumerate() {
            m.remember(id, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(m.len(), 3);
        assert!(!m.contains(CampaignId(1), t0));
        assert!(m.contains(CampaignId(4), t0));
        // re-remembering refreshes, and the stale pair does not evict the fresh entry
        m.remember(CampaignId(2), t0 + Duration::from_millis(10));
        m.remember(CampaignId(5), t0 + Duration::from_millis(11));
        assert!(m.contains(CampaignId(2), t0 + Duration::from_millis(12)));
        assert!(!m.contains(CampaignId(3), t0 + Duration::from_millis(12)));
    }

    #[tokio::test]
    async fn reload_locks_are_per_campaign_and_leave_the_map() {
        let d = Directory::default();
        let a = d.reload_lock(CampaignId(1)).await;
        // another campaign's lock is free while 1 is held
        let b = tokio::time::timeout(Duration::from_millis(100), d.reload_lock(CampaignId(2)))
            .await
            .expect("campaign 2 does not wait for campaign 1");
        assert_eq!(d.locks_held(), 2);
        drop(b);
        assert_eq!(d.locks_held(), 1);
        let waiting =
            tokio::time::timeout(Duration::from_millis(50), d.reload_lock(CampaignId(1))).await;
        assert!(waiting.is_err(), "campaign 1 is held");
        drop(a);
        assert_eq!(
            d.locks_held(),
            0,
            "no lock is left behind, even after a waiter gave up"
        );
    }

    #[tokio::test]
    async fn a_waiter_keeps_the_lock_in_the_map() {
        let d = Arc::new(Directory::default());
        let a = d.reload_lock(CampaignId(7)).await;
        let d2 = d.clone();
        let waiter = tokio::spawn(async move {
            let _g = d2.reload_lock(CampaignId(7)).await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        waiter.await.unwrap();
        assert_eq!(d.locks_held(), 0);
    }

    proptest! {
        #[test]
        fn memory_never_exceeds_its_cap_and_answers_like_a_model(
            ops in proptest::collection::vec((0i64..30, 0u64..3_000), 1..300),
            cap in 1usize..20,
        ) {
            let t0 = Instant::now();
            let ttl = Duration::from_millis(1_000);
            let mut m = Memory::new(ttl, cap);
            let mut now = t0;
            for (id, step) in ops {
                let id = CampaignId(id);
                now += Duration::from_millis(step / 10);
                m.remember(id, now);
                prop_assert!(m.len() <= cap);
                prop_assert!(m.order.len() <= 2 * cap + 1);
                prop_assert!(m.contains(id, now), "the id just remembered is there");
                prop_assert!(!m.contains(id, now + ttl));
            }
        }
    }
}
