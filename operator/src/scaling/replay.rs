//! Table tests: a ticket opening replayed through [`decide`] at a 5 s resync, an ended
//! campaign's step-down, and a recorded drop (quiet, spike, long tail, metrics outage) from
//! `testdata/drop.csv` (see `replay_drop.rs`).
//! The queue goes 0 → 100,000 in 10 s and drains linearly over 10 minutes; p95 stays a
//! healthy 120 ms (under the 250 ms target, so latency never asks for more). Every row of the
//! expected curve is explained by one rule of the example policy (min 2, max 40, 2000 waiting
//! per replica, scale-up at most max(8 pods, 100 %) per 15 s, scale-down at most
//! max(2 pods, 20 %) per 60 s after a 300 s stabilization window, panic at 2×).

use super::tests::example_policy;
use super::*;

/// Queue depth at `t` seconds after the opening.
fn waiting_at(t: u64) -> u64 {
    match t {
        0..=10 => 10_000 * t,
        11..=610 => 100_000 * (610 - t) / 600,
        _ => 0,
    }
}

/// Replays the series and returns (t seconds, waiting, desired, panic) every 5 s for 20 min.
fn replay() -> Vec<(u64, u64, u32, bool)> {
    let p = example_policy();
    let mut h = History::default();
    let mut current = 2;
    let mut out = Vec::new();
    for t in (0..=1200).step_by(5) {
        let now = 1_000_000 + t * 1000;
        let waiting = waiting_at(t);
        let input = Input {
            now,
            current,
            signals: Signals {
                waiting: Some(waiting),
                latency: Latency::P95Ms(120.0),
                triggers: Default::default(),
            },
        };
        let d = decide(&p, &input, &mut h);
        h.record_change(now, current, d.desired);
        current = d.desired;
        out.push((t, waiting, d.desired, d.panic));
    }
    out
}

/// (t seconds, expected replicas, expected panic, the rule that explains it). The stable
/// window (60 s) averages the queue for the recommendation, the panic window (6 s) for bursts.
const EXPECTED: &[(u64, u32, bool, &str)] = &[
    (0, 2, false, "empty queue: minReplicas"),
    (
        5,
        13,
        true,
        "panic window (t=0, 5) averages 25,000 → 13 ≥ 2 × 2: panic follows it at once, no step",
    ),
    (
        10,
        38,
        true,
        "panic window (t=5, 10) averages 75,000 → 38 ≥ 2 × 13: at once again",
    ),
    (15, 40, true, "99,583 → 50, capped at maxReplicas"),
    (
        65,
        40,
        true,
        "the last burst was t=10 (t=15's 50 < 2 × 38): panic lasts the 60 s stable window",
    ),
    (70, 40, false, "panic over; the queue still wants 40"),
    (
        505,
        40,
        false,
        "the stable average was within 10 % of 40 × 2000 until t=205: in the 300 s window",
    ),
    (
        510,
        36,
        false,
        "the run of 40 ended at t=210, 300 s ago; t=210's average 71,250 → 36 is the highest left",
    ),
    (615, 27, false, "t=315's average 53,750 → 27"),
    (
        700,
        20,
        false,
        "from t=400 latency (ceil(40 × 120/250) = 20) outbids the draining queue",
    ),
    (
        815,
        18,
        false,
        "t=515's latency recommendation ceil(36 × 0.48) = 18",
    ),
    (
        1200,
        7,
        false,
        "draining on latency alone, each step delayed by the 300 s window",
    ),
];

#[test]
fn ticket_opening_follows_the_expected_replica_curve() {
    let curve = replay();
    for (t, replicas, panic, why) in EXPECTED {
        let row = curve.iter().find(|r| r.0 == *t).expect("row");
        assert_eq!(
            (row.2, row.3),
            (*replicas, *panic),
            "t={t}s ({why}): got {row:?}"
        );
    }
    // Up while the queue grows, then down, never back up.
    let peak = curve.iter().position(|r| r.2 == 40).expect("reaches max");
    assert!(curve[..=peak].windows(2).all(|w| w[0].2 <= w[1].2));
    assert!(curve[peak..].windows(2).all(|w| w[0].2 >= w[1].2));
    // Scale-down is gradual: never more than max(2 pods, 20 %) in any 60 s.
    for (i, r) in curve.iter().enumerate() {
        if let Some(later) = curve.get(i + 12) {
            assert!(
                r.2 - later.2.min(r.2) <= 2u32.max(r.2 / 5),
                "too fast from {r:?} to {later:?}"
            );
        }
    }
}

/// After `endsAt`: the campaign ended at 40 replicas with the queue still wanting 40 (the
/// line drains after the end); the operator's 2 s resync steps down to the pre-campaign 3
/// with the example's scale-down policy, never patching straight back to 3.
fn step_down_replay() -> Vec<(u64, u32)> {
    let p = example_policy();
    let mut h = History::default();
    let end = 10_000_000;
    let mut current = 40;
    // The campaign's last minute: 80,000 waiting, 40 replicas, every 2 s.
    for t in (0..60u64).step_by(2) {
        let input = Input {
            now: end - 60_000 + t * 1000,
            current,
            signals: Signals {
                waiting: Some(80_000),
                latency: Latency::P95Ms(120.0),
                triggers: Default::default(),
            },
        };
        current = decide(&p, &input, &mut h).desired;
    }
    let mut out = Vec::new();
    for t in (0..=900u64).step_by(2) {
        let now = end + t * 1000;
        let d = step_down(&p, now, current, 3, &mut h);
        h.record_change(now, current, d.desired);
        current = d.desired;
        out.push((t, current));
    }
    out
}

/// (seconds after endsAt, expected replicas, the rule that explains it)
const STEP_DOWN: &[(u64, u32, &str)] = &[
    (
        0,
        40,
        "the last recommendation, 40 at t=-2 s, is in the 300 s window",
    ),
    (298, 40, "still in the window (300 s old, inclusive)"),
    (
        300,
        32,
        "window passed: 3 wanted, step min(40-2, 80 % of 40) = 32",
    ),
    (358, 32, "inside the 60 s period from 40"),
    (360, 25, "period from 32: min(30, 25.6) = 25"),
    (420, 20, "min(23, 20)"),
    (480, 16, "min(18, 16)"),
    (540, 12, "min(14, 12.8)"),
    (600, 9, "min(10, 9.6)"),
    (660, 7, "min(7, 7.2)"),
    (720, 5, "min(5, 5.6)"),
    (780, 3, "min(3, 4), the pre-campaign count"),
    (900, 3, "never below it"),
];

#[test]
fn an_ended_campaign_steps_down_to_its_pre_campaign_count() {
    let curve = step_down_replay();
    for (t, replicas, why) in STEP_DOWN {
        let row = curve.iter().find(|r| r.0 == *t).expect("row");
        assert_eq!(row.1, *replicas, "t={t}s ({why}): got {row:?}");
    }
    assert!(curve.windows(2).all(|w| w[0].1 >= w[1].1), "never back up");
}
