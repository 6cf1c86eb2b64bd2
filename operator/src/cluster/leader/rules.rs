//! The takeover rules of leader election, pure (no I/O, no clock: the caller passes a
//! monotonic `now`), with client-go's semantics:
//!
//! - a follower reads the Lease every `retry` and takes it when it is empty (never held, or
//!   released), or when its record has not changed for the record's `leaseDurationSeconds` as
//!   measured on the follower's own clock (client-go's `observedTime`; remote timestamps are
//!   never compared with the local clock, so clock skew between nodes does not matter);
//! - the leader renews every `retry` and stops leading when it has not renewed successfully
//!   within `renew_deadline`, counted from the *start* of its last successful renewal, so it
//!   steps down before any follower can consider the lease expired;
//! - on shutdown the leader releases: empty holder, `leaseDurationSeconds: 1` (client-go's
//!   `ReleaseOnCancel`), which a follower takes on its next read.
//!
//! One refinement over client-go: a change first seen at a read happened after the previous
//! read, so the lease's age is counted from that previous read, but never from more than
//! `retry` ago. A follower that reads every `retry` then takes over a crashed leader's lease
//! within one lease duration of the leader's last renewal (client-go: up to `retry` later),
//! and the safety margin stays `lease - renew_deadline - retry` (3 s with 15/10/2).

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::LeaseSpec, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp,
};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a follower waits on a record that does not change (written into the Lease).
    pub lease: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often followers read and the leader renews.
    pub retry: Duration,
}

impl Timings {
    /// client-go's defaults for controllers: 15 s lease, 10 s renew deadline, 2 s retry.
    pub const CLIENT_GO: Self = Self {
        lease: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry: Duration::from_secs(2),
    };

    /// What the operator runs with: client-go's lease and renew deadline, with a 1 s retry
    /// instead of 2 s, so a released Lease is taken within about a second (the hand-over
    /// target on SIGTERM is 2 s, controller start-up included). It costs one Lease read a
    /// second per follower and one renewal a second for the leader.
    pub const OPERATOR: Self = Self {
        retry: Duration::from_secs(1),
        ..Self::CLIENT_GO
    };

    /// The leader must give up before a follower can take over: `renew_deadline + retry <
    /// lease`, and the lease is whole seconds (the Lease field's unit).
    pub fn validate(&self) -> Result<(), String> {
        if self.lease.subsec_nanos() != 0 || self.lease.is_zero() {
            return Err(format!("lease {:?} must be whole seconds", self.lease));
        }
        if self.retry.is_zero() || self.renew_deadline + self.retry >= self.lease {
            return Err(format!(
                "need 0 < retry and renew deadline + retry < lease (got {:?} + {:?} vs {:?})",
                self.renew_deadline, self.retry, self.lease
            ));
        }
        Ok(())
    }

    pub fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease.as_secs()).unwrap_or(i32::MAX)
    }
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Empty, ours, or expired: write ourselves in (create, renew or take over).
    Take,
    /// Someone else holds it; read again after `retry_in`.
    Wait { holder: String, retry_in: Duration },
}

/// A replica's memory of the Lease between reads: which record it saw and since when.
#[derive(Clone, Debug, Default)]
pub struct Observer {
    seen: Option<(String, Millis)>,
    last_read: Option<Millis>,
}

impl Observer {
    /// Judges one successful read: `lease` is `(resourceVersion, spec)`, `None` when absent.
    pub fn judge(
        &mut self,
        lease: Option<(&str, Option<&LeaseSpec>)>,
        me: &str,
        now: Millis,
        t: &Timings,
    ) -> Verdict {
        let previous_read = self.last_read.replace(now);
        let (version, spec) = match lease {
            Some((v, Some(spec))) => (v, spec),
            _ => {
                self.seen = None;
                return Verdict::Take;
            }
        };
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        if holder.is_empty() || holder == me {
            self.seen = None;
            return Verdict::Take;
        }
        let since = match &self.seen {
            Some((v, since)) if v == version => *since,
            _ => changed_since(previous_read, now, t.retry),
        };
        self.seen = Some((version.to_owned(), since));
        let ttl = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(t.lease, Duration::from_secs);
        let expires = since.saturating_add(millis(ttl));
        if now >= expires {
            return Verdict::Take;
        }
        Verdict::Wait {
            holder: holder.to_owned(),
            retry_in: t.retry.min(Duration::from_millis(expires - now)),
        }
    }
}

/// When a record first seen at `now` may have been written: after the previous read, and
/// counted from at most `retry` ago (a later read after a gap must not shorten the wait).
fn changed_since(previous_read: Option<Millis>, now: Millis, retry: Duration) -> Millis {
    let floor = now.saturating_sub(millis(retry));
    previous_read.map_or(now, |r| r.max(floor))
}

fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The leader steps down when its last successful renewal started `renew_deadline` ago.
pub fn must_stop(last_renewal_started: Millis, now: Millis, t: &Timings) -> bool {
    now >= last_renewal_started.saturating_add(millis(t.renew_deadline))
}

/// The spec that makes `me` the holder: a renewal keeps the acquire time, a takeover sets it
/// and counts a transition.
pub fn claim(old: Option<&LeaseSpec>, me: &str, t: &Timings, now: Timestamp) -> LeaseSpec {
    let mut spec = old.cloned().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(me) {
        spec.acquire_time = Some(MicroTime(now));
        // client-go counts every change of holder, a released lease's included.
        spec.lease_transitions = Some(old.map_or(0, |o| o.lease_transitions.unwrap_or(0) + 1));
        spec.holder_identity = Some(me.to_owned());
    }
    spec.lease_duration_seconds = Some(t.lease_seconds());
    spec.renew_time = Some(MicroTime(now));
    spec
}

/// client-go's `ReleaseOnCancel`: no holder, a 1 s lease, transitions kept.
pub fn released(old: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_transitions: old.lease_transitions,
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Timings = Timings::CLIENT_GO;

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    fn wait(o: &mut Observer, version: &str, now: Millis) -> Option<Duration> {
        match o.judge(Some((version, Some(&held_by("other")))), "me", now, &T) {
            Verdict::Take => None,
            Verdict::Wait { retry_in, .. } => Some(retry_in),
        }
    }

    #[test]
    fn client_go_defaults_are_valid_and_bad_timings_are_refused() {
        assert_eq!(T.validate(), Ok(()));
        assert_eq!(Timings::OPERATOR.validate(), Ok(()));
        let slow_leader = Timings {
            renew_deadline: Duration::from_secs(14),
            ..T
        };
        assert!(slow_leader.validate().is_err());
        let fractional = Timings {
            lease: Duration::from_millis(15_500),
            ..T
        };
        assert!(fractional.validate().is_err());
    }

    #[test]
    fn absent_empty_released_and_own_leases_are_taken_at_once() {
        let mut o = Observer::default();
        assert_eq!(o.judge(None, "me", 0, &T), Verdict::Take);
        assert_eq!(o.judge(Some(("1", None)), "me", 0, &T), Verdict::Take);
        let release = released(&held_by("other"), Timestamp::UNIX_EPOCH);
        assert_eq!(
            o.judge(Some(("2", Some(&release))), "me", 0, &T),
            Verdict::Take
        );
        assert_eq!(
            o.judge(Some(("3", Some(&held_by("me")))), "me", 0, &T),
            Verdict::Take
        );
    }

    #[test]
    fn a_live_holder_is_respected_for_a_lease_duration_of_local_time() {
        let mut o = Observer::default();
        // First sight: counted from now (client-go), whatever the remote timestamps say.
        assert_eq!(wait(&mut o, "7", 100_000), Some(T.retry));
        assert_eq!(wait(&mut o, "7", 110_000), Some(T.retry));
        assert_eq!(wait(&mut o, "7", 114_000), Some(Duration::from_secs(1)));
        assert_eq!(wait(&mut o, "7", 115_000), None);
    }

    #[test]
    fn a_renewal_restarts_the_wait_from_the_previous_read_at_most_retry_ago() {
        let mut o = Observer::default();
        wait(&mut o, "7", 0);
        wait(&mut o, "7", 2_000);
        // Renewed between the reads at 2 s and 4 s: expiry 2 s + 15 s.
        wait(&mut o, "8", 4_000);
        assert_eq!(wait(&mut o, "8", 16_000), Some(Duration::from_secs(1)));
        assert_eq!(wait(&mut o, "8", 17_000), None);
        // After a 30 s gap in reads, a new record counts from at most 2 s ago.
        let mut o = Observer::default();
        wait(&mut o, "7", 0);
        wait(&mut o, "9", 30_000);
        assert_eq!(wait(&mut o, "9", 42_999), Some(Duration::from_millis(1)));
        assert_eq!(wait(&mut o, "9", 43_000), None);
    }

    #[test]
    fn the_leader_stops_at_the_renew_deadline() {
        assert!(!must_stop(1_000, 10_999, &T));
        assert!(must_stop(1_000, 11_000, &T));
    }

    #[test]
    fn claims_count_transitions_and_release_clears_the_holder() {
        let now = Timestamp::from_second(1_000).expect("ts");
        let fresh = claim(None, "me", &T, now);
        assert_eq!(fresh.holder_identity.as_deref(), Some("me"));
        assert_eq!(
            (fresh.lease_transitions, fresh.lease_duration_seconds),
            (Some(0), Some(15))
        );
        let renewed = claim(Some(&fresh), "me", &T, now);
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = claim(Some(&renewed), "you", &T, now);
        assert_eq!(taken.lease_transitions, Some(1));
        let gone = released(&taken, now);
        assert_eq!(gone.holder_identity.as_deref(), Some(""));
        assert_eq!(
            (gone.lease_duration_seconds, gone.lease_transitions),
            (Some(1), Some(1))
        );
        assert_eq!(claim(Some(&gone), "me", &T, now).lease_transitions, Some(2));
    }

    proptest! {
        /// A leader renewing at arbitrary moments (gaps up to 20 s) and a follower reading at
        /// arbitrary moments (gaps up to 20 s): the follower never takes the lease while the
        /// leader still leads (it leads until `renew_deadline` after its last renewal), and
        /// when the follower reads every `retry` it takes over within one lease duration of
        /// the last renewal.
        #[test]
        fn never_two_leaders_and_takeover_within_a_lease(
            renew_gaps in proptest::collection::vec(1u64..20_000, 1..40),
            read_gaps in proptest::collection::vec(1u64..20_000, 1..200),
            regular in any::<bool>(),
        ) {
            let mut renewals = Vec::new();
            let mut at = 0;
            for g in renew_gaps {
                // A leader that missed its deadline stops renewing.
                if g >= millis(T.renew_deadline) { break; }
                at += g;
                renewals.push(at);
            }
            let last = *renewals.last().unwrap_or(&0);
            let mut o = Observer::default();
            let first_read = millis(T.retry);
            let (mut now, mut next_gap) = (0, first_read);
            let mut gaps = read_gaps.into_iter();
            loop {
                now += if regular { next_gap } else { gaps.next().unwrap_or(first_read) };
                let version = renewals.iter().filter(|r| **r <= now).count().to_string();
                match o.judge(Some((&version, Some(&held_by("other")))), "me", now, &T) {
                    Verdict::Take => {
                        let leader_renewed = renewals.iter().rev().find(|r| **r <= now).copied().unwrap_or(0);
                        prop_assert!(now >= leader_renewed + millis(T.renew_deadline), "took at {now}, leader renewed at {leader_renewed}");
                        if regular {
                            prop_assert!(now <= last.max(first_read) + millis(T.lease), "took at {now}, last renewal {last}");
                        }
                        break;
                    }
                    Verdict::Wait { retry_in, .. } => next_gap = millis(retry_in),
                }
                prop_assert!(now < last + 10 * millis(T.lease), "never took over");
            }
        }
    }
}
