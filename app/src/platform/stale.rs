//! The bounded store of stale copies behind [`super::cache`] (stale-while-error).
//!
//! A hard bound on entries *and* bytes, whatever the request mix: an insert that would pass
//! either evicts the least recently used copies first (a linked hash map: O(1) per insert and
//! per eviction, no scan of the map), and a copy larger than the whole byte budget is not
//! kept at all. Reading a copy, or seeing it again on a hit, moves it to the back, so the hot
//! pages stay while a spray of one-off keys only churns the cold end.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hashlink::LinkedHashMap;

/// What one entry is charged beyond its key and value: the map's node, the `Instant`, the
/// `Bytes` header and the key's allocation header, rounded up.
pub const ENTRY_OVERHEAD: usize = 96;

/// The bounds of a [`StaleStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleBounds {
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// Entries and bytes held (for tests and the metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaleUsage {
    pub entries: usize,
    pub bytes: usize,
}

pub struct StaleStore {
    map: LinkedHashMap<Box<str>, (Bytes, Instant)>,
    bounds: StaleBounds,
    bytes: usize,
}

/// One key per family and field (`\0` cannot occur in either: families and fields are built
/// by the handlers from ids and numbers).
pub fn key(family: &str, field: &str) -> String {
    let mut k = String::with_capacity(family.len() + field.len() + 1);
    k.push_str(family);
    k.push('\0');
    k.push_str(field);
    k
}

fn cost(key: &str, value: &Bytes) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD
}

impl StaleStore {
    pub fn new(bounds: StaleBounds) -> Self {
        Self {
            map: LinkedHashMap::new(),
            bounds,
            bytes: 0,
        }
    }

    pub fn usage(&self) -> StaleUsage {
        StaleUsage {
            entries: self.map.len(),
            bytes: self.bytes,
        }
    }

    /// When `key`'s copy was stored, marking it recently used.
    pub fn touch(&mut self, key: &str) -> Option<Instant> {
        self.map.to_back(key).map(|(_, at)| *at)
    }

    /// The copy of `key` if it is at most `max_age` old (marking it recently used).
    pub fn get(&mut self, key: &str, max_age: Duration, now: Instant) -> Option<Bytes> {
        self.map
            .to_back(key)
            .filter(|(_, at)| now.saturating_duration_since(*at) <= max_age)
            .map(|(b, _)| b.clone())
    }

    /// Stores `value` as `key`'s copy, evicting the least recently used copies until both
    /// bounds hold. A value that alone exceeds the byte budget is not stored (and an older
    /// copy of it is dropped, it would be staler still).
    pub fn put(&mut self, key: &str, value: Bytes, now: Instant) {
        if let Some((old, _)) = self.map.remove(key) {
            self.bytes -= cost(key, &old);
        }
        let add = cost(key, &value);
        if add > self.bounds.max_bytes || self.bounds.max_entries == 0 {
            return;
        }
        while self.map.len() >= self.bounds.max_entries || self.bytes + add > self.bounds.max_bytes
        {
            let Some((k, (v, _))) = self.map.pop_front() else {
                break;
            };
            self.bytes -= cost(&k, &v);
        }
        self.map.insert(key.into(), (value, now));
        self.bytes += add;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn store(max_entries: usize, max_bytes: usize) -> StaleStore {
        StaleStore::new(StaleBounds {
            max_entries,
            max_bytes,
        })
    }

    fn recount(s: &StaleStore) -> usize {
        s.map.iter().map(|(k, (v, _))| cost(k, v)).sum()
    }

    #[test]
    fn the_least_recently_used_copy_is_evicted_first() {
        let now = Instant::now();
        let mut s = store(3, usize::MAX);
        for k in ["a", "b", "c"] {
            s.put(k, Bytes::from_static(b"x"), now);
        }
        // reading "a" makes "b" the oldest
        assert!(s.get("a", Duration::from_secs(1), now).is_some());
        s.put("d", Bytes::from_static(b"x"), now);
        assert_eq!(s.usage().entries, 3);
        assert!(s.touch("b").is_none(), "b was least recently used");
        for k in ["a", "c", "d"] {
            assert!(s.touch(k).is_some(), "{k} kept");
        }
    }

    #[test]
    fn the_byte_budget_evicts_and_refuses_oversized_copies() {
        let now = Instant::now();
        let one = cost("k0", &Bytes::from(vec![0; 100]));
        let mut s = store(1_000, 3 * one);
        for i in 0..10 {
            s.put(&format!("k{i}"), Bytes::from(vec![0; 100]), now);
        }
        assert_eq!(s.usage().entries, 3);
        assert!(s.usage().bytes <= 3 * one);
        // bigger than the whole budget: not kept, and its older copy is gone too
        s.put("k9", Bytes::from(vec![0; 4 * one]), now);
        assert!(s.touch("k9").is_none());
        assert_eq!(s.usage().bytes, recount(&s));
    }

    #[test]
    fn copies_older_than_the_max_age_are_not_served() {
        let then = Instant::now();
        let mut s = store(10, usize::MAX);
        s.put("a", Bytes::from_static(b"x"), then);
        let later = then + Duration::from_secs(11);
        assert!(s.get("a", Duration::from_secs(10), later).is_none());
        assert!(s.get("a", Duration::from_secs(20), later).is_some());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u16, usize),
        Get(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..500, 0usize..3_000).prop_map(|(k, n)| Op::Put(k, n)),
            1 => (0u16..500).prop_map(Op::Get),
        ]
    }

    proptest! {
        /// Whatever the mix of keys and sizes, both bounds hold after every operation, the
        /// byte count is exact, and the newest copy of a key that fits is always kept.
        #[test]
        fn both_bounds_hold_whatever_the_request_mix(
            max_entries in 0usize..64,
            max_bytes in 0usize..40_000,
            ops in proptest::collection::vec(op(), 1..400),
        ) {
            let now = Instant::now();
            let mut s = store(max_entries, max_bytes);
            for o in ops {
                match o {
                    Op::Put(k, n) => {
                        let k = format!("goods:list\0{k}");
                        let v = Bytes::from(vec![7; n]);
                        let fits = cost(&k, &v) <= max_bytes && max_entries > 0;
                        s.put(&k, v.clone(), now);
                        prop_assert_eq!(s.get(&k, Duration::ZERO, now), fits.then_some(v));
                    }
                    Op::Get(k) => {
                        s.get(&format!("goods:list\0{k}"), Duration::ZERO, now);
                    }
                }
                let u = s.usage();
                prop_assert!(u.entries <= max_entries, "{} entries > {}", u.entries, max_entries);
                prop_assert!(u.bytes <= max_bytes, "{} bytes > {}", u.bytes, max_bytes);
                prop_assert_eq!(u.bytes, recount(&s));
            }
        }
    }
}
