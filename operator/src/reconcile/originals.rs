//! Pure rules about a campaign's originals — the replica count and Redis settings found
//! before it took over: what must be saved before the first change, and when the Redis
//! settings may be put back. (How replicas step back down is [`crate::scaling::step_down`].)

use floodgate_crds::v1alpha1::{CampaignStatus, RedisApplied};

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
