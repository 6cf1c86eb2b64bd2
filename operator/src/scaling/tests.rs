//! Unit and property tests of [`decide`]: each property is one rule of OPERATOR.md.

use proptest::prelude::*;

use super::*;

fn rules(stab: u64, pods: u32, percent: u32, period: u64) -> Rules {
    Rules {
        stabilization_ms: stab,
        pods,
        percent,
        period_ms: period,
    }
}

/// The example Campaign's policy (crds/examples/campaign.yaml).
pub(super) fn example_policy() -> Policy {
    Policy {
        min: 2,
        max: 40,
        waiting_per_replica: 2000,
        p95_target_ms: 250.0,
        tolerance: 0.1,
        up: rules(0, 8, 100, 15_000),
        down: rules(300_000, 2, 20, 60_000),
        panic_window_ms: 6_000,
        panic_threshold: 2.0,
        fallback: Some(4),
        latency_max: 6,
    }
}

fn input(now: Millis, current: u32, waiting: Option<u64>, latency: Latency) -> Input {
    Input {
        now,
        current,
        signals: Signals {
            waiting,
            latency,
            triggers: Default::default(),
        },
    }
}

#[test]
fn queue_depth_recommends_ceil_of_waiting_per_replica() {
    let d = decide(
        &example_policy(),
        &input(0, 10, Some(25_000), Latency::Idle),
        &mut History::default(),
    );
    assert_eq!(d.recommendation, 13);
    assert!(
        d.reason
            .contains("queue depth 25000 / 2000 per replica = 13"),
        "{}",
        d.reason
    );
}

#[test]
fn latency_alone_is_capped_when_the_queue_is_empty() {
    let p = example_policy();
    // p95 at 4× target wants 4 × 4 = 16 replicas; with an empty queue only latency_max (6).
    let d = decide(
        &p,
        &input(0, 4, Some(0), Latency::P95Ms(1000.0)),
        &mut History::default(),
    );
    assert_eq!(d.recommendation, 6);
    // With a queue that already justifies 10, latency may go up to that, not beyond.
    let d = decide(
        &p,
        &input(0, 4, Some(20_000), Latency::P95Ms(1000.0)),
        &mut History::default(),
    );
    assert_eq!(d.recommendation, 10);
}

#[test]
fn partial_metrics_never_shrink() {
    let d = decide(
        &example_policy(),
        &input(0, 10, Some(0), Latency::Unavailable),
        &mut History::default(),
    );
    assert_eq!(d.desired, 10);
    assert!(!d.fallback);
}

#[test]
fn panic_blocks_scale_down_until_a_stable_window_passes() {
    let mut p = example_policy();
    p.down = rules(0, 100, 100, 1_000);
    let mut h = History::default();
    let d = decide(&p, &input(0, 2, Some(40_000), Latency::Idle), &mut h);
    assert!(d.panic);
    h.record_change(0, 2, d.desired);
    let d = decide(&p, &input(30_000, 10, Some(0), Latency::Idle), &mut h);
    assert!(d.panic && d.desired == 10, "{d:?}");
    let d = decide(&p, &input(60_001, 10, Some(0), Latency::Idle), &mut h);
    assert!(!d.panic && d.desired == 2, "{d:?}");
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        (1u32..10, 0u32..60, 100u64..5_000, 100u32..600, 0u32..30),
        (0u64..60_000, 1u32..10, 10u32..200, 5_000u64..60_000),
        (0u64..600_000, 1u32..5, 5u32..50, 15_000u64..120_000),
        (
            1_000u64..10_000,
            15u32..40,
            proptest::option::of(0u32..100),
            0u32..100,
        ),
    )
        .prop_map(
            |((min, span, wpr, target, tol), up, down, (pw, pt, fb, lm))| {
                let max = min + span;
                Policy {
                    min,
                    max,
                    waiting_per_replica: wpr,
                    p95_target_ms: f64::from(target),
                    tolerance: f64::from(tol) / 100.0,
                    up: rules(up.0, up.1, up.2, up.3),
                    down: rules(down.0, down.1, down.2, down.3),
                    panic_window_ms: pw,
                    panic_threshold: f64::from(pt) / 10.0,
                    fallback: fb.map(|f| min + f % (span + 1)),
                    latency_max: min + lm % (span + 1),
                }
            },
        )
}

fn latency_strategy() -> impl Strategy<Value = Latency> {
    prop_oneof![
        Just(Latency::Unavailable),
        Just(Latency::Idle),
        (1u32..3_000).prop_map(|ms| Latency::P95Ms(f64::from(ms))),
    ]
}

/// (seconds since the previous step, waiting, latency)
fn steps_strategy() -> impl Strategy<Value = Vec<(u64, Option<u64>, Latency)>> {
    proptest::collection::vec(
        (
            1u64..30,
            proptest::option::weighted(0.9, 0u64..200_000),
            latency_strategy(),
        ),
        1..80,
    )
}

/// One decision of a simulated run, with what the run looked like when it was taken.
struct Step {
    now: Millis,
    current: u32,
    d: Decision,
}

/// Runs the steps, applying every decision as the operator would, and returns each step.
fn simulate(p: &Policy, start: u32, steps: &[(u64, Option<u64>, Latency)]) -> Vec<Step> {
    let mut h = History::default();
    let (mut now, mut current) = (1_000_000u64, start);
    let mut out = Vec::new();
    for (dt, waiting, latency) in steps {
        now += dt * 1000;
        let d = decide(p, &input(now, current, *waiting, *latency), &mut h);
        h.record_change(now, current, d.desired);
        out.push(Step {
            now,
            current,
            d: d.clone(),
        });
        current = d.desired;
    }
    out
}

/// Replicas in force at `at` in a simulated run (the value after the last change at or
/// before it).
fn replicas_at(run: &[Step], start: u32, at: Millis) -> u32 {
    run.iter()
        .rev()
        .find(|s| s.now <= at)
        .map_or(start, |s| s.d.desired)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn never_outside_min_max(p in policy_strategy(), start in 0u32..80, steps in steps_strategy()) {
        for s in simulate(&p, start, &steps) {
            prop_assert!(s.d.desired >= p.min && s.d.desired <= p.max, "{} not in [{}, {}]", s.d.desired, p.min, p.max);
        }
    }

    #[test]
    fn never_scales_down_while_panicking(p in policy_strategy(), start in 0u32..80, steps in steps_strategy()) {
        for s in simulate(&p, start, &steps) {
            if s.d.panic {
                prop_assert!(s.d.desired >= s.current.min(p.max), "{} < {} in panic", s.d.desired, s.current);
            }
        }
    }

    #[test]
    fn never_scales_below_a_recommendation_in_the_stabilization_window(
        p in policy_strategy(), start in 0u32..80, steps in steps_strategy()
    ) {
        let run = simulate(&p, start, &steps);
        for s in &run {
            if s.d.desired < s.current {
                let highest = run.iter()
                    .filter(|o| o.now <= s.now && s.now - o.now <= p.down.stabilization_ms)
                    .map(|o| o.d.recommendation).max().unwrap_or(0);
                prop_assert!(s.d.desired >= highest.min(s.current).min(p.max),
                    "scaled down to {} with {} in the window", s.d.desired, highest);
            }
        }
    }

    #[test]
    fn tolerance_band_holds_steady(
        p in policy_strategy(), current_off in 0u32..60, q in -99i32..=99, l in -99i32..=99
    ) {
        let current = p.min + current_off % (p.max - p.min + 1);
        // Both signals within (0.99 ×) the tolerance band around their targets.
        let qf = 1.0 + p.tolerance * f64::from(q) / 100.0;
        let lf = 1.0 + p.tolerance * f64::from(l) / 100.0;
        let waiting = (f64::from(current) * p.waiting_per_replica as f64 * qf).round() as u64;
        // Rounding `waiting` may step outside a zero-width band; skip those.
        let ratio = waiting as f64 / (f64::from(current) * p.waiting_per_replica as f64);
        prop_assume!((ratio - 1.0).abs() <= p.tolerance);
        let d = decide(&p, &input(0, current, Some(waiting), Latency::P95Ms(p.p95_target_ms * lf)), &mut History::default());
        prop_assert_eq!(d.desired, current);
    }

    #[test]
    fn step_limits_are_respected(p in policy_strategy(), start in 0u32..80, steps in steps_strategy()) {
        let run = simulate(&p, start, &steps);
        for s in &run {
            let clamped = s.d.desired == p.min || s.d.desired == p.max;
            if s.d.desired > s.current && !clamped {
                let from = u64::from(replicas_at(&run, start, s.now.saturating_sub(p.up.period_ms)));
                let by_pct = (from as f64 * (100.0 + f64::from(p.up.percent)) / 100.0).ceil() as u64;
                let limit = (from + u64::from(p.up.pods)).max(by_pct).max(u64::from(s.current));
                prop_assert!(u64::from(s.d.desired) <= limit, "up {} -> {} over limit {}", s.current, s.d.desired, limit);
            }
            if s.d.desired < s.current && !clamped {
                let from = u64::from(replicas_at(&run, start, s.now.saturating_sub(p.down.period_ms)));
                let by_pct = (from as f64 * f64::from(100 - p.down.percent) / 100.0).floor() as u64;
                let limit = from.saturating_sub(u64::from(p.down.pods)).min(by_pct).min(u64::from(s.current));
                prop_assert!(u64::from(s.d.desired) >= limit, "down {} -> {} under limit {}", s.current, s.d.desired, limit);
            }
        }
    }

    #[test]
    fn fallback_when_every_signal_is_missing(p in policy_strategy(), start in 0u32..80, steps in steps_strategy()) {
        let mut steps = steps;
        steps.push((5, None, Latency::Unavailable));
        let run = simulate(&p, start, &steps);
        let last = run.last().expect("one step");
        prop_assert!(last.d.fallback);
        prop_assert_eq!(last.d.recommendation, p.fallback.unwrap_or(last.current));
        // It moves toward the fallback (within the clamp), never away from it.
        let target = last.d.recommendation.clamp(p.min, p.max);
        let (lo, hi) = (last.current.min(target).max(p.min), last.current.max(target).min(p.max));
        prop_assert!(last.d.desired >= lo && last.d.desired <= hi, "{} outside [{lo}, {hi}]", last.d.desired);
    }

    #[test]
    fn prewarm_reaches_min_replicas_at_once(p in policy_strategy(), start in 0u32..10, latency in latency_strategy()) {
        // Prewarming calls decide with an empty queue; the first decision is already >= min.
        let d = decide(&p, &input(0, start, Some(0), latency), &mut History::default());
        prop_assert!(d.desired >= p.min);
    }
}

/// A campaign run, then every resync after `endsAt` stepping down toward `floor`: returns
/// each (current, desired) pair of the step-down.
fn simulate_end(
    p: &Policy,
    start: u32,
    steps: &[(u64, Option<u64>, Latency)],
    floor: u32,
) -> Vec<Step> {
    let mut h = History::default();
    let (mut now, mut current) = (1_000_000u64, start);
    for (dt, waiting, latency) in steps {
        now += dt * 1000;
        let d = decide(p, &input(now, current, *waiting, *latency), &mut h);
        h.record_change(now, current, d.desired);
        current = d.desired;
    }
    let mut out = Vec::new();
    // 5 s resyncs for long enough to pass any window and any number of steps.
    for _ in 0..2_000 {
        now += 5_000;
        let d = step_down(p, now, current, floor, &mut h);
        h.record_change(now, current, d.desired);
        out.push(Step {
            now,
            current,
            d: d.clone(),
        });
        current = d.desired;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn after_the_end_replicas_step_down_to_the_pre_campaign_count_and_never_below(
        p in policy_strategy(), start in 0u32..80, steps in steps_strategy(), floor in 1u32..20,
    ) {
        let run = simulate_end(&p, start, &steps, floor);
        for s in &run {
            prop_assert!(s.d.desired >= floor, "{} below the pre-campaign {floor}", s.d.desired);
            if s.current >= floor {
                prop_assert!(s.d.desired <= s.current, "up {} -> {} after the end", s.current, s.d.desired);
            } else {
                prop_assert_eq!(s.d.desired, floor, "back up to the pre-campaign count at once");
            }
            // The campaign's scale-down step: at most max(pods, percent) per period (checked
            // once the campaign's own changes are out of the period).
            let start = replicas_at(&run, run[0].current, s.now.saturating_sub(p.down.period_ms));
            if s.d.desired < s.current && s.now >= run[0].now + p.down.period_ms {
                let by_pods = u64::from(start).saturating_sub(u64::from(p.down.pods));
                let by_pct = (f64::from(start) * f64::from(100 - p.down.percent.min(100)) / 100.0).floor() as u64;
                let limit = by_pods.min(by_pct).min(u64::from(s.current));
                prop_assert!(u64::from(s.d.desired) >= limit, "down {} -> {} too fast", s.current, s.d.desired);
            }
        }
        prop_assert_eq!(run.last().map(|s| s.d.desired), Some(floor), "reaches the pre-campaign count");
    }
}
