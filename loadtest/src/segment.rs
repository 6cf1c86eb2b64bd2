//! Execution segments for distributed runs (`--segment i/N`): each shard takes a
//! deterministic, striped share so that N shards together run the load exactly once.
//!
//! Striping (global item `k` belongs to shard `k mod N`) keeps every shard's share balanced
//! at each moment of a ramp, which is what k6's execution-segment sequences achieve too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u64,
    pub count: u64,
}

impl Segment {
    pub const WHOLE: Segment = Segment { index: 0, count: 1 };

    /// Whether global item `k` (an arrival or a VU) belongs to this shard.
    pub fn owns(&self, k: u64) -> bool {
        k % self.count == self.index
    }

    /// How many of the first `total` items this shard owns.
    pub fn share(&self, total: u64) -> u64 {
        (total + self.count - 1 - self.index) / self.count
    }

    /// The global index of this shard's `local`-th item.
    pub fn global(&self, local: u64) -> u64 {
        local * self.count + self.index
    }

    pub fn is_whole(&self) -> bool {
        self.count == 1
    }
}

impl FromStr for Segment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("segment {s:?} is not i/N"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("bad segment index {i:?}"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("bad segment count {n:?}"))?;
        if count == 0 || index >= count {
            return Err(format!("segment {s:?} needs 0 <= i < N"));
        }
        Ok(Segment { index, count })
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("1/4".parse::<Segment>(), Ok(Segment { index: 1, count: 4 }));
        assert!("4/4".parse::<Segment>().is_err());
        assert!("0/0".parse::<Segment>().is_err());
        assert!("x".parse::<Segment>().is_err());
    }

    proptest! {
        #[test]
        fn shards_cover_every_item_exactly_once(total in 0u64..5000, count in 1u64..17) {
            let shards: Vec<Segment> = (0..count).map(|index| Segment { index, count }).collect();
            for k in 0..total {
                prop_assert_eq!(shards.iter().filter(|s| s.owns(k)).count(), 1);
            }
            prop_assert_eq!(shards.iter().map(|s| s.share(total)).sum::<u64>(), total);
            for s in &shards {
                let owned: Vec<u64> = (0..total).filter(|k| s.owns(*k)).collect();
                let mapped: Vec<u64> = (0..s.share(total)).map(|l| s.global(l)).collect();
                prop_assert_eq!(owned, mapped);
            }
        }
    }
}
