//! Pure rules about a campaign's originals — the replica count and Redis settings found
//! before it took over: what must be saved before the first change, and when the Redis
//! settings may be put back. (How replicas step back down is [`crate::scaling::step_down`].)

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{CampaignStatus, RampDown, RedisApplied};

/// Which originals a takeover must write to the status before the first scale patch or
/// `CONFIG SET`, so a crash, a lost lease or a failed status patch in between can never
/// record the campaign's own values as the originals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToSave {
    pub replicas: bool,
    pub redis: bool,
}

impl ToSave {
    pub fn any(self) -> bool {
        self.replicas || self.redis
    }
}

/// `old` is the status as last written; `changes_redis` says the campaign will `CONFIG SET`
/// (it asks for settings and they are not refused).
pub fn to_save(old: &CampaignStatus, changes_redis: bool) -> ToSave {
    ToSave {
        replicas: old.replicas.as_ref().and_then(|r| r.before).is_none(),
        redis: changes_redis && old.redis_before.is_none(),
    }
}

/// Whether the saved Redis settings can be put back now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisRestore {
    Now,
    /// `used_memory` does not fit under the `maxmemory` being restored: with `noeviction`
    /// every write would fail (and an evicting policy would drop keys), so the campaign's
    /// value stays until it fits.
    Defer {
        used: u64,
        limit: u64,
    },
}

/// Restore only when Redis's `used_memory` fits under the `maxmemory` being restored
/// (`0` means no limit). A value that is not a byte count is what Redis itself reported, so
/// it is put back as it was.
pub fn redis_restore(before: &RedisApplied, used_memory: u64) -> RedisRestore {
    match before.maxmemory.trim().parse::<u64>() {
        Ok(limit) if limit > 0 && used_memory >= limit => RedisRestore::Defer {
            used: used_memory,
            limit,
        },
        _ => RedisRestore::Now,
    }
}

/// One step of a ramp-down (`restore.rampDown`): `None` while `periodSeconds` has not passed
/// since the last scale write, else the next count — down by `pods`, or by `percent` % of
/// the current count rounded up (at least one pod), never below `floor`. A target already
/// at or below `floor` goes to `floor` at once (restoring never ramps up).
pub fn ramp_step(
    r: &RampDown,
    current: u32,
    floor: u32,
    last_step: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<u32> {
    if current <= floor {
        return Some(floor);
    }
    let period = chrono::Duration::seconds(i64::from(r.period_seconds.max(1)));
    if last_step.is_some_and(|t| now - t < period) {
        return None;
    }
    let step = match (r.pods, r.percent) {
        (Some(pods), _) => u32::try_from(pods).unwrap_or(1),
        (None, Some(pct)) => {
            let pct = u64::from(u32::try_from(pct).unwrap_or(100));
            u32::try_from((u64::from(current) * pct).div_ceil(100)).unwrap_or(current)
        }
        (None, None) => current,
    };
    Some(current.saturating_sub(step.max(1)).max(floor))
}

#[cfg(test)]
mod tests {
    use floodgate_crds::v1alpha1::ReplicaStatus;
    use proptest::prelude::*;

    use super::*;

    fn before(maxmemory: &str) -> RedisApplied {
        RedisApplied {
            maxmemory: maxmemory.into(),
            maxmemory_policy: "noeviction".into(),
        }
    }

    #[test]
    fn a_first_takeover_saves_what_it_will_change_and_only_that() {
        let fresh = CampaignStatus::default();
        assert_eq!(
            to_save(&fresh, true),
            ToSave {
                replicas: true,
                redis: true
            }
        );
        assert_eq!(
            to_save(&fresh, false),
            ToSave {
                replicas: true,
                redis: false
            }
        );
        let saved = CampaignStatus {
            replicas: Some(ReplicaStatus {
                current: 10,
                desired: 10,
                reason: String::new(),
                before: Some(3),
            }),
            redis_before: Some(before("0")),
            ..Default::default()
        };
        assert!(
            !to_save(&saved, true).any(),
            "saved once, never overwritten"
        );
        // Replicas written by a pass that had no `before` yet still lack it.
        let mut unsaved = saved.clone();
        unsaved.replicas.as_mut().expect("replicas").before = None;
        unsaved.redis_before = None;
        assert_eq!(
            to_save(&unsaved, true),
            ToSave {
                replicas: true,
                redis: true
            }
        );
    }

    #[test]
    fn no_limit_or_an_unreadable_one_restores_at_once() {
        assert_eq!(redis_restore(&before("0"), u64::MAX), RedisRestore::Now);
        assert_eq!(redis_restore(&before("lots"), 5), RedisRestore::Now);
    }

    fn ramp(pods: Option<i32>, percent: Option<i32>) -> RampDown {
        RampDown {
            pods,
            percent,
            period_seconds: 10,
            timeout: floodgate_crds::Dur::from_secs(600),
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn a_ramp_walks_down_by_pods_per_period() {
        let r = ramp(Some(2), None);
        let mut n = 9;
        let mut seen = vec![n];
        let mut last = None;
        for secs in (0..100).step_by(5) {
            if let Some(next) = ramp_step(&r, n, 3, last, t(secs)) {
                if next != n {
                    last = Some(t(secs));
                }
                n = next;
                if seen.last() != Some(&n) {
                    seen.push(n);
                }
            }
        }
        assert_eq!(seen, vec![9, 7, 5, 3]);
        assert_eq!(
            ramp_step(&r, 7, 3, Some(t(0)), t(9)),
            None,
            "within the period"
        );
        assert_eq!(
            ramp_step(&r, 2, 3, Some(t(0)), t(1)),
            Some(3),
            "below: back at once"
        );
    }

    proptest! {
        /// Each step removes at most `pods` (or ceil(percent %)), at least one pod, never
        /// lands below the floor, and waits out the period.
        #[test]
        fn ramp_steps_are_bounded(current in 0u32..2000, floor in 0u32..2000, pods in 1i32..50,
                                  percent in 1i32..=100, by_pods: bool, since in 0i64..30) {
            let r = if by_pods { ramp(Some(pods), None) } else { ramp(None, Some(percent)) };
            let got = ramp_step(&r, current, floor, Some(t(0)), t(since));
            if current <= floor {
                prop_assert_eq!(got, Some(floor));
            } else if since < 10 {
                prop_assert_eq!(got, None);
            } else {
                let next = got.expect("a step");
                let max = if by_pods { pods as u32 } else { (u64::from(current) * percent as u64).div_ceil(100) as u32 };
                prop_assert!(next >= floor && next < current);
                prop_assert!(current - next <= max.max(1));
                prop_assert!(next == floor || current - next == max.max(1));
            }
        }
    }

    proptest! {
        #[test]
        fn maxmemory_is_restored_only_when_used_memory_fits(limit in 1u64..1 << 40, used in 0u64..1 << 41) {
            let plan = redis_restore(&before(&limit.to_string()), used);
            if used < limit {
                prop_assert_eq!(plan, RedisRestore::Now);
            } else {
                prop_assert_eq!(plan, RedisRestore::Defer { used, limit });
            }
        }
    }
}
