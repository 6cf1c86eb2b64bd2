//! Pure waiting-room rules: where a user's entry lives in Redis, how many to admit per tick,
//! ETA and polling hints, and the phase of a queue at an instant. No I/O here.

use chrono::{DateTime, Utc};
use floodgate_crds::runtime::QueueSettings;

/// Waiting entries are grouped into Redis hashes of this many consecutive user ids. Small
/// hashes stay in Redis's compact listpack encoding (default `hash-max-listpack-entries` is
/// 128), which is what keeps a waiting user at a few dozen bytes instead of ~100 for a
/// hashtable or sorted-set entry. User ids are a dense identity sequence, so buckets fill.
pub const BUCKET_SIZE: i64 = 128;

/// The bucket (hash key suffix) and field of a user's waiting entry.
pub fn bucket_of(user: i64) -> (i64, i64) {
    (user.div_euclid(BUCKET_SIZE), user.rem_euclid(BUCKET_SIZE))
}

/// The phase of a queue at `now`, from its live settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before `opensAt`: joins accepted (pre-queue), nobody admitted.
    NotOpen,
    Open,
    /// After `closesAt`: no new joins; those in line are still admitted.
    Closed,
}

pub fn phase(q: &QueueSettings, now: DateTime<Utc>) -> Phase {
    if q.opens_at.is_some_and(|o| now < o) {
        Phase::NotOpen
    } else if q.closes_at.is_some_and(|c| now >= c) {
        Phase::Closed
    } else {
        Phase::Open
    }
}

pub fn status_label(q: &QueueSettings, now: DateTime<Utc>) -> &'static str {
    match phase(q, now) {
        Phase::NotOpen => "not-open",
        Phase::Closed => "closed",
        Phase::Open if q.paused => "paused",
        Phase::Open => "open",
    }
}

/// Why admission is stopped right now, if it is.
pub fn hold_reason(q: &QueueSettings, now: DateTime<Utc>) -> Option<&'static str> {
    if phase(q, now) == Phase::NotOpen {
        Some("not-open")
    } else if q.paused {
        Some("paused")
    } else {
        None
    }
}

/// Token bucket of the admission loop: `admitPerMinute` spread evenly over ticks, with at
/// most one second's worth saved up so a pause or a full house does not release a burst.
#[derive(Debug, Default, Clone)]
pub struct Allowance {
    credit: f64,
}

impl Allowance {
    /// Adds the credit earned over `elapsed_secs` and returns how many may be admitted now.
    pub fn earn(&mut self, admit_per_minute: u32, elapsed_secs: f64) -> u64 {
        let per_sec = f64::from(admit_per_minute) / 60.0;
        let cap = per_sec.max(1.0);
        self.credit = (self.credit + per_sec * elapsed_secs.max(0.0)).min(cap);
        self.credit.floor() as u64
    }

    /// Spends what was actually admitted.
    pub fn spend(&mut self, admitted: u64) {
        self.credit = (self.credit - admitted as f64).max(0.0);
    }

    /// Nothing is saved up while admission is stopped.
    pub fn reset(&mut self) {
        self.credit = 0.0;
    }
}

/// Seconds until `ahead` people are admitted at `rate_per_sec`; the measured rate is used when
/// there is one, else the configured one. `None` while admission is stopped.
pub fn eta_seconds(
    ahead: u64,
    measured_per_sec: f64,
    q: &QueueSettings,
    stopped: bool,
) -> Option<u64> {
    if stopped {
        return None;
    }
    let rate = if measured_per_sec > 0.0 {
        measured_per_sec
    } else {
        f64::from(q.admit_per_minute) / 60.0
    };
    if rate <= 0.0 {
        return None;
    }
    Some(((ahead as f64 + 1.0) / rate).ceil() as u64)
}

/// When a waiting user should poll again: about a tenth of the remaining wait, at least 1 s
/// and at most 30 s, and always well inside `abandonAfter` so that a client honouring the
/// hint can never be mistaken for one who left.
pub fn poll_after_seconds(eta: Option<u64>, ahead: u64, q: &QueueSettings) -> u64 {
    let by_eta = eta.map_or(ahead / 100 + 1, |e| e / 10);
    let ceiling = (q.abandon_after.as_secs() / 3).clamp(1, 30);
    by_eta.clamp(1, ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_crds::duration::Dur;
    use proptest::prelude::*;

    fn q() -> QueueSettings {
        QueueSettings::default()
    }

    #[test]
    fn buckets_group_consecutive_ids() {
        assert_eq!(bucket_of(0), (0, 0));
        assert_eq!(bucket_of(127), (0, 127));
        assert_eq!(bucket_of(128), (1, 0));
    }

    #[test]
    fn phases_follow_opens_and_closes() {
        let now = Utc::now();
        let mut s = q();
        assert_eq!(phase(&s, now), Phase::Open);
        s.opens_at = Some(now + chrono::Duration::seconds(10));
        assert_eq!(phase(&s, now), Phase::NotOpen);
        assert_eq!(hold_reason(&s, now), Some("not-open"));
        s.opens_at = Some(now - chrono::Duration::seconds(10));
        s.closes_at = Some(now);
        assert_eq!(phase(&s, now), Phase::Closed);
        s.paused = true;
        assert_eq!(status_label(&s, now), "closed");
        s.closes_at = None;
        assert_eq!(status_label(&s, now), "paused");
        assert_eq!(hold_reason(&s, now), Some("paused"));
    }

    #[test]
    fn allowance_spreads_the_rate_and_caps_the_burst() {
        let mut a = Allowance::default();
        // 600/min = 10/s: a quarter second earns 2 (2.5 floored), the half is kept
        assert_eq!(a.earn(600, 0.25), 2);
        a.spend(2);
        // 0.5 kept + 2.5 earned
        assert_eq!(a.earn(600, 0.25), 3);
        a.spend(3);
        // a long gap saves at most one second's worth
        assert_eq!(a.earn(600, 3600.0), 10);
        a.reset();
        assert_eq!(a.earn(600, 0.0), 0);
        // a slow queue still admits one at a time
        let mut slow = Allowance::default();
        assert_eq!(slow.earn(30, 1.0), 0);
        assert_eq!(slow.earn(30, 1.0), 1);
    }

    #[test]
    fn eta_uses_the_measured_rate_and_is_unknown_when_stopped() {
        assert_eq!(eta_seconds(99, 10.0, &q(), false), Some(10));
        // no measurement yet: configured 600/min
        assert_eq!(eta_seconds(9, 0.0, &q(), false), Some(1));
        assert_eq!(eta_seconds(9, 10.0, &q(), true), None);
    }

    #[test]
    fn poll_hint_stays_inside_abandon_after() {
        let mut s = q();
        s.abandon_after = Dur::from_secs(6);
        assert_eq!(poll_after_seconds(Some(10_000), 100_000, &s), 2);
        s.abandon_after = Dur::from_secs(1);
        assert_eq!(poll_after_seconds(Some(10_000), 100_000, &s), 1);
    }

    proptest! {
        #[test]
        fn bucket_round_trips(user in 0i64..i64::MAX) {
            let (b, f) = bucket_of(user);
            prop_assert!((0..BUCKET_SIZE).contains(&f));
            prop_assert_eq!(b * BUCKET_SIZE + f, user);
        }

        #[test]
        fn poll_hint_grows_with_distance_and_is_bounded(a in 0u64..1_000_000, b in 0u64..1_000_000, rate in 0.1f64..1000.0) {
            let s = q();
            let (near, far) = (a.min(b), a.max(b));
            let p_near = poll_after_seconds(eta_seconds(near, rate, &s, false), near, &s);
            let p_far = poll_after_seconds(eta_seconds(far, rate, &s, false), far, &s);
            prop_assert!(p_near <= p_far);
            prop_assert!((1..=30).contains(&p_far));
            prop_assert!(p_far * 3 <= s.abandon_after.as_secs());
        }

        #[test]
        fn allowance_never_exceeds_the_rate(rate in 1u32..100_000, ticks in proptest::collection::vec(0.0f64..2.0, 1..50)) {
            let mut a = Allowance::default();
            let mut total = 0u64;
            let mut time = 0.0;
            for dt in ticks {
                time += dt;
                let n = a.earn(rate, dt);
                a.spend(n);
                total += n;
            }
            let per_sec = f64::from(rate) / 60.0;
            // everything admitted was earned, plus at most nothing saved beyond the elapsed time
            prop_assert!(total as f64 <= per_sec * time + 1e-6);
        }
    }
}
