//! Transitions, minimum calls, both thresholds, half-open trial counting, forced states and
//! reconfiguration of the pure breaker.

use std::time::{Duration, Instant};

use floodgate_crds::{
    duration::Dur,
    runtime::{BreakerSettings, BreakerState, SlidingWindow, SlidingWindowType},
};
use proptest::prelude::*;

use super::*;

const FAST: Duration = Duration::from_millis(1);

fn settings(size: u32, minimum: u32, permitted: u32) -> BreakerSettings {
    BreakerSettings {
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 80.0,
        slow_call_duration: Dur::from_millis(100),
        sliding_window: SlidingWindow {
            kind: SlidingWindowType::Count,
            size,
        },
        minimum_calls: minimum,
        wait_in_open: Dur::from_secs(5),
        permitted_in_half_open: permitted,
        state: BreakerState::Auto,
    }
}

fn call(m: &mut Machine, now: Instant, outcome: Outcome, took: Duration) -> Option<Transition> {
    let (admission, _) = m.acquire(now);
    let Admission::Allowed { trial } = admission else {
        panic!("refused: {admission:?}")
    };
    m.record(now, trial, outcome, took)
}

#[test]
fn opens_at_the_failure_threshold_only_after_minimum_calls() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(10, 4, 2)).into(), t0);
    for _ in 0..3 {
        assert_eq!(
            call(&mut m, t0, Outcome::Failure, FAST),
            None,
            "3 calls are below the minimum of 4"
        );
    }
    let t = call(&mut m, t0, Outcome::Failure, FAST);
    assert_eq!(
        t,
        Some(Transition {
            from: State::Closed,
            to: State::Open
        })
    );
    assert_eq!(
        m.acquire(t0).0,
        Admission::Rejected {
            retry_after: Duration::from_secs(5)
        }
    );
    assert_eq!(
        m.refusing_for(t0 + Duration::from_secs(2)),
        Some(Duration::from_secs(3))
    );
}

#[test]
fn stays_closed_below_the_failure_threshold() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(10, 4, 2)).into(), t0);
    // 4 of 10 failed = 40 % < 50 %
    for i in 0..10 {
        let outcome = if i % 5 >= 3 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert_eq!(call(&mut m, t0, outcome, FAST), None);
    }
    assert_eq!(m.state(), State::Closed);
}

#[test]
fn slow_calls_open_it_even_when_they_succeed() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(5, 5, 2)).into(), t0);
    for _ in 0..4 {
        assert_eq!(
            call(&mut m, t0, Outcome::Success, Duration::from_millis(150)),
            None
        );
    }
    // 5 of 5 slow = 100 % >= 80 %
    assert!(call(&mut m, t0, Outcome::Success, Duration::from_millis(100)).is_some());
    assert_eq!(m.state(), State::Open);
}

#[test]
fn half_open_lets_exactly_the_permitted_trials_through_then_closes() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(2, 2, 3)).into(), t0);
    call(&mut m, t0, Outcome::Failure, FAST);
    call(&mut m, t0, Outcome::Failure, FAST);
    assert_eq!(m.state(), State::Open);
    let later = t0 + Duration::from_secs(5);
    assert_eq!(
        m.refusing_for(later),
        None,
        "the wait has passed: the next call decides"
    );
    let (first, t) = m.acquire(later);
    assert_eq!(first, Admission::Allowed { trial: true });
    assert_eq!(
        t,
        Some(Transition {
            from: State::Open,
            to: State::HalfOpen
        })
    );
    assert_eq!(m.acquire(later).0, Admission::Allowed { trial: true });
    assert_eq!(m.acquire(later).0, Admission::Allowed { trial: true });
    assert!(
        matches!(m.acquire(later).0, Admission::Rejected { .. }),
        "a fourth trial is refused"
    );
    assert_eq!(m.record(later, true, Outcome::Success, FAST), None);
    assert_eq!(m.record(later, true, Outcome::Failure, FAST), None);
    // 1 of 3 failed = 33 % < 50 %
    let t = m.record(later, true, Outcome::Success, FAST);
    assert_eq!(
        t,
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
    assert_eq!(m.acquire(later).0, Admission::Allowed { trial: false });
}

#[test]
fn failing_trials_reopen_and_abandoned_trials_give_their_slot_back() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(1, 1, 2)).into(), t0);
    call(&mut m, t0, Outcome::Failure, FAST);
    let later = t0 + Duration::from_secs(6);
    assert_eq!(m.acquire(later).0, Admission::Allowed { trial: true });
    assert_eq!(m.acquire(later).0, Admission::Allowed { trial: true });
    m.release(true);
    assert_eq!(
        m.acquire(later).0,
        Admission::Allowed { trial: true },
        "the released slot is reusable"
    );
    m.record(later, true, Outcome::Failure, FAST);
    let t = m.record(later, true, Outcome::Success, FAST);
    assert_eq!(
        t,
        Some(Transition {
            from: State::HalfOpen,
            to: State::Open
        })
    );
    assert_eq!(m.refusing_for(later), Some(Duration::from_secs(5)));
}

#[test]
fn calls_admitted_before_opening_do_not_count_afterwards() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(1, 1, 1)).into(), t0);
    assert_eq!(m.acquire(t0).0, Admission::Allowed { trial: false });
    call(&mut m, t0, Outcome::Failure, FAST);
    assert_eq!(m.record(t0, false, Outcome::Success, FAST), None);
    assert_eq!(m.state(), State::Open);
}

#[test]
fn time_window_forgets_old_seconds() {
    let t0 = Instant::now();
    let mut s = settings(0, 4, 1);
    s.sliding_window = SlidingWindow {
        kind: SlidingWindowType::Time,
        size: 2,
    };
    let mut m = Machine::new((&s).into(), t0);
    for _ in 0..3 {
        call(&mut m, t0, Outcome::Failure, FAST);
    }
    // three seconds later those failures have left the 2-second window
    let later = t0 + Duration::from_secs(3);
    for _ in 0..3 {
        assert_eq!(call(&mut m, later, Outcome::Success, FAST), None);
    }
    assert_eq!(
        call(&mut m, later, Outcome::Failure, FAST),
        None,
        "1 of 4 recent calls failed"
    );
    assert_eq!(m.state(), State::Closed);
}

#[test]
fn forced_states_override_and_leaving_them_starts_closed() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(2, 2, 1)).into(), t0);
    let mut forced = settings(2, 2, 1);
    forced.state = BreakerState::ForcedOpen;
    let t = m.reconfigure((&forced).into(), t0);
    assert_eq!(
        t,
        Some(Transition {
            from: State::Closed,
            to: State::ForcedOpen
        })
    );
    assert!(
        matches!(
            m.acquire(t0 + Duration::from_secs(60)).0,
            Admission::Rejected { .. }
        ),
        "forced-open never half-opens"
    );
    assert!(m.refusing_for(t0).is_some());

    forced.state = BreakerState::Disabled;
    m.reconfigure((&forced).into(), t0);
    for _ in 0..10 {
        assert_eq!(
            call(&mut m, t0, Outcome::Failure, FAST),
            None,
            "disabled records nothing"
        );
    }
    assert_eq!(m.state(), State::Disabled);

    let t = m.reconfigure((&settings(2, 2, 1)).into(), t0);
    assert_eq!(
        t,
        Some(Transition {
            from: State::Disabled,
            to: State::Closed
        })
    );
    assert_eq!(
        call(&mut m, t0, Outcome::Failure, FAST),
        None,
        "the window starts empty"
    );
}

#[test]
fn reconfigure_keeps_state_and_window_when_the_shape_is_unchanged() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(4, 4, 1)).into(), t0);
    for _ in 0..3 {
        call(&mut m, t0, Outcome::Failure, FAST);
    }
    let mut tuned = settings(4, 4, 1);
    tuned.wait_in_open = Dur::from_secs(9);
    assert_eq!(m.reconfigure((&tuned).into(), t0), None);
    // the three recorded failures are still there: one more reaches the minimum and opens
    assert!(call(&mut m, t0, Outcome::Failure, FAST).is_some());
    assert_eq!(m.refusing_for(t0), Some(Duration::from_secs(9)));
    // an open breaker stays open across a retune
    assert_eq!(m.reconfigure((&settings(4, 4, 1)).into(), t0), None);
    assert_eq!(m.state(), State::Open);
}

#[test]
fn reconfigure_with_a_new_shape_starts_an_empty_window() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(4, 4, 1)).into(), t0);
    for _ in 0..3 {
        call(&mut m, t0, Outcome::Failure, FAST);
    }
    m.reconfigure((&settings(8, 4, 1)).into(), t0);
    for _ in 0..3 {
        assert_eq!(call(&mut m, t0, Outcome::Failure, FAST), None);
    }
    assert!(call(&mut m, t0, Outcome::Failure, FAST).is_some());
}

#[test]
fn fewer_half_open_trials_after_a_retune_decide_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new((&settings(1, 1, 3)).into(), t0);
    call(&mut m, t0, Outcome::Failure, FAST);
    let later = t0 + Duration::from_secs(5);
    m.acquire(later);
    m.record(later, true, Outcome::Success, FAST);
    let t = m.reconfigure((&settings(1, 1, 1)).into(), later);
    assert_eq!(
        t,
        Some(Transition {
            from: State::HalfOpen,
            to: State::Closed
        })
    );
}

proptest! {
    /// In closed state with a count window, the breaker opens exactly when the last `size`
    /// calls (at least `minimum` of them) reach a threshold — checked against a direct
    /// recount after every call.
    #[test]
    fn count_window_matches_a_recount(
        calls in prop::collection::vec((any::<bool>(), any::<bool>()), 1..200),
        size in 1u32..20,
        minimum in 1u32..30,
    ) {
        let t0 = Instant::now();
        let mut m = Machine::new((&settings(size, minimum, 1)).into(), t0);
        let mut seen: Vec<(bool, bool)> = Vec::new();
        for (failed, slow) in calls {
            let took = if slow { Duration::from_millis(200) } else { FAST };
            let outcome = if failed { Outcome::Failure } else { Outcome::Success };
            let t = call(&mut m, t0, outcome, took);
            seen.push((failed, slow));
            let recent = &seen[seen.len().saturating_sub(size as usize)..];
            let n = recent.len() as f64;
            let f = recent.iter().filter(|c| c.0).count() as f64 * 100.0 / n;
            let s = recent.iter().filter(|c| c.1).count() as f64 * 100.0 / n;
            let should_open = recent.len() as u32 >= minimum.min(size) && (f >= 50.0 || s >= 80.0);
            prop_assert_eq!(t.is_some(), should_open);
            if should_open {
                prop_assert_eq!(m.state(), State::Open);
                break;
            }
        }
    }

    /// Whatever happens, half-open never admits more concurrent trials than permitted.
    #[test]
    fn half_open_never_over_admits(permitted in 1u32..10, attempts in 1u32..40, releases in 0u32..5) {
        let t0 = Instant::now();
        let mut m = Machine::new((&settings(1, 1, permitted)).into(), t0);
        call(&mut m, t0, Outcome::Failure, FAST);
        let later = t0 + Duration::from_secs(5);
        let mut out = 0u32;
        for i in 0..attempts {
            if matches!(m.acquire(later).0, Admission::Allowed { .. }) {
                out += 1;
            }
            if i < releases && out > 0 {
                m.release(true);
                out -= 1;
            }
            prop_assert!(out <= permitted);
        }
    }
}
