//! Unit and property tests of [`decide`]: each property is one rule of OPERATOR.md.

use floodgate_crds::v1alpha1::FallbackBehavior;
use proptest::prelude::*;

use super::*;

pub(super) fn rules(stab: u64, pods: u32, percent: u32, period: u64) -> Rules {
    Rules::max_step(stab, pods, percent, period)
}

/// The example Campaign's policy (crds/examples/campaign.yaml).
pub(super) fn example_policy() -> Policy {
    Policy {
        min: 2,
        max: 40,
        waiting_per_replica: 2000,
        p95_target_ms: 250.0,
        up: rules(0, 8, 100, 15_000),
        down: rules(300_000, 2, 20, 60_000),
        panic_window_ms: 6_000,
        stable_window_ms: 60_000,
        panic_threshold: 2.0,
        fallback: Some(Fallback {
            replicas: 4,
            failure_threshold: 3,
            behavior: FallbackBehavior::Static,
        }),
        latency_max: 6,
    }
}

pub(super) fn input(now: Millis, current: u32, waiting: Option<u64>, latency: Latency) -> Input {
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
    // The stable window's average (20,000) still wants 10: no scale-down from 20.
    let d = decide(&p, &input(30_000, 20, Some(0), Latency::Idle), &mut h);
    assert!(d.panic && d.desired == 20, "{d:?}");
    let d = decide(&p, &input(60_001, 20, Some(0), Latency::Idle), &mut h);
    assert!(!d.panic && d.desired == 2, "{d:?}");
}

/// One direction's rules: 1–3 policies of either kind, each with its own period, any
/// `selectPolicy`, its own tolerance.
fn rules_strategy(
    stab: std::ops::Range<u64>,
    pods: std::ops::Range<u32>,
    percent: std::ops::Range<u32>,
) -> impl Strategy<Value = Rules> {
    let policy = prop_oneof![
        (pods, 5u64..120).prop_map(|(v, s)| StepPolicy {
            kind: StepKind::Pods,
            value: v,
            period_ms: s * 1000
        }),
        (percent, 5u64..120).prop_map(|(v, s)| StepPolicy {
            kind: StepKind::Percent,
            value: v,
            period_ms: s * 1000
        }),
    ];
    let select = prop_oneof![
        6 => Just(Select::Max),
        3 => Just(Select::Min),
        1 => Just(Select::Disabled),
    ];
    (
        stab,
        proptest::collection::vec(policy, 1..4),
        select,
        0u32..30,
    )
        .prop_map(|(stabilization_ms, policies, select, tol)| Rules {
            stabilization_ms,
            tolerance: f64::from(tol) / 100.0,
            policies,
            select,
        })
}

fn fallback_strategy() -> impl Strategy<Value = Option<(u32, u32, FallbackBehavior)>> {
    proptest::option::of((
        0u32..100,
        1u32..5,
        prop_oneof![
            Just(FallbackBehavior::Static),
            Just(FallbackBehavior::CurrentReplicas),
            Just(FallbackBehavior::CurrentReplicasIfHigher),
            Just(FallbackBehavior::CurrentReplicasIfLower),
        ],
    ))
}

pub(super) fn policy_strategy() -> impl Strategy<Value = Policy> {
    (
        (1u32..10, 0u32..60, 100u64..5_000, 100u32..600),
        rules_strategy(0..60_000, 1..10, 10..200),
        rules_strategy(0..600_000, 1..5, 5..60),
        (1_000u64..10_000, 1_000u64..120_000, 15u32..40),
        (fallback_strategy(), 0u32..100),
    )
        .prop_map(
            |((min, span, wpr, target), up, down, (pw, sw, pt), (fb, lm))| {
                let max = min + span;
                Policy {
                    min,
                    max,
                    waiting_per_replica: wpr,
                    p95_target_ms: f64::from(target),
                    up,
                    down,
                    panic_window_ms: pw,
                    stable_window_ms: pw + sw,
                    panic_threshold: f64::from(pt) / 10.0,
                    fallback: fb.map(|(r, t, behavior)| Fallback {
                        replicas: min + r % (span + 1),
                        failure_threshold: t,
                        behavior,
                    }),
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
pub(super) fn steps_strategy() -> impl Strategy<Value = Vec<(u64, Option<u64>, Latency)>> {
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
pub(super) struct Step {
    pub(super) now: Millis,
    pub(super) current: u32,
    pub(super) d: Decision,
}

/// A simulated operator: it applies every decision and keeps each step.
pub(super) struct Run {
    pub(super) h: History,
    pub(super) now: Millis,
    pub(super) current: u32,
    pub(super) steps: Vec<Step>,
}

impl Run {
    pub(super) fn new(start: u32) -> Self {
        Self {
            h: History::default(),
            now: 1_000_000,
            current: start,
            steps: Vec::new(),
        }
    }

    /// The campaign's steps, each `dt` seconds after the last, decided and applied.
    pub(super) fn campaign(&mut self, p: &Policy, steps: &[(u64, Option<u64>, Latency)]) {
        for (dt, waiting, latency) in steps {
            self.now += dt * 1000;
            let d = decide(
                p,
                &input(self.now, self.current, *waiting, *latency),
                &mut self.h,
            );
            self.apply(d);
        }
    }

    /// Applies `d` as the operator would: the scale is remembered and the step kept.
    pub(super) fn apply(&mut self, d: Decision) {
        self.h.record_change(self.now, self.current, d.desired);
        let current = std::mem::replace(&mut self.current, d.desired);
        self.steps.push(Step {
            now: self.now,
            current,
            d,
        });
    }
}

/// Runs the steps, applying every decision as the operator would, and returns each step.
fn simulate(p: &Policy, start: u32, steps: &[(u64, Option<u64>, Latency)]) -> Vec<Step> {
    let mut run = Run::new(start);
    run.campaign(p, steps);
    run.steps
}

/// The highest count `rules` allow a scale-up to at step `s`: each policy from the count at
/// the start of its own period, then `selectPolicy`.
fn up_limit(rules: &Rules, run: &[Step], start: u32, s: &Step) -> u32 {
    let bounds = rules.policies.iter().map(|p| {
        let from = u64::from(replicas_at(run, start, s.now.saturating_sub(p.period_ms)));
        match p.kind {
            StepKind::Pods => from + u64::from(p.value),
            StepKind::Percent => (from as f64 * (100.0 + f64::from(p.value)) / 100.0).ceil() as u64,
        }
    });
    let bound = match rules.select {
        Select::Max => bounds.max(),
        Select::Min => bounds.min(),
        Select::Disabled => Some(0),
    };
    u32::try_from(bound.unwrap_or(0))
        .unwrap_or(u32::MAX)
        .max(s.current)
}

/// The lowest count `rules` allow a scale-down to at step `s`.
pub(super) fn down_limit(rules: &Rules, run: &[Step], start: u32, s: &Step) -> u32 {
    let bounds = rules.policies.iter().map(|p| {
        let from = u64::from(replicas_at(run, start, s.now.saturating_sub(p.period_ms)));
        match p.kind {
            StepKind::Pods => from.saturating_sub(u64::from(p.value)),
            StepKind::Percent => {
                (from as f64 * f64::from(100u32.saturating_sub(p.value)) / 100.0).floor() as u64
            }
        }
    });
    let bound = match rules.select {
        Select::Max => bounds.min(),
        Select::Min => bounds.max(),
        Select::Disabled => Some(u64::MAX),
    };
    u32::try_from(bound.unwrap_or(u64::MAX))
        .unwrap_or(u32::MAX)
        .min(s.current)
}

/// Replicas in force at `at` in a simulated run (the value after the last change at or
/// before it).
pub(super) fn replicas_at(run: &[Step], start: u32, at: Millis) -> u32 {
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
        // Both signals within (0.99 ×) the band: up to 1 + up.tolerance above the target,
        // down to 1 - down.tolerance below it (each direction its own, HPA 1.33).
        let band = |x: i32| if x >= 0 { p.up.tolerance } else { p.down.tolerance };
        let qf = 1.0 + band(q) * f64::from(q) / 100.0;
        let lf = 1.0 + band(l) * f64::from(l) / 100.0;
        let waiting = (f64::from(current) * p.waiting_per_replica as f64 * qf).round() as u64;
        // Rounding `waiting` may step outside a zero-width band; skip those.
        let ratio = waiting as f64 / (f64::from(current) * p.waiting_per_replica as f64);
        prop_assume!(ratio <= 1.0 + p.up.tolerance && ratio >= 1.0 - p.down.tolerance);
        let d = decide(&p, &input(0, current, Some(waiting), Latency::P95Ms(p.p95_target_ms * lf)), &mut History::default());
        prop_assert_eq!(d.desired, current);
    }

    #[test]
    fn each_step_policy_limits_the_change_within_its_own_period(
        p in policy_strategy(), start in 0u32..80, steps in steps_strategy()
    ) {
        let run = simulate(&p, start, &steps);
        for s in &run {
            let clamped = s.d.desired == p.min || s.d.desired == p.max;
            // In panic the scale-up follows the panic window at once (checked elsewhere).
            if s.d.desired > s.current && !clamped && s.d.limit != Limit::PanicUp {
                let limit = up_limit(&p.up, &run, start, s);
                prop_assert!(s.d.desired <= limit, "up {} -> {} over limit {}", s.current, s.d.desired, limit);
            }
            if s.d.desired < s.current && !clamped {
                let limit = down_limit(&p.down, &run, start, s);
                prop_assert!(s.d.desired >= limit, "down {} -> {} under limit {}", s.current, s.d.desired, limit);
            }
        }
    }

    #[test]
    fn fallback_when_every_signal_is_missing(p in policy_strategy(), start in 0u32..80, steps in steps_strategy()) {
        let mut steps = steps;
        let threshold = p.fallback.map_or(3, |f| f.failure_threshold);
        steps.extend((0..threshold).map(|_| (5, None, Latency::Unavailable)));
        let run = simulate(&p, start, &steps);
        let last = run.last().expect("one step");
        prop_assert!(last.d.fallback);
        prop_assert_eq!(last.d.recommendation, p.fallback.map_or(last.current, |f| f.target(last.current)));
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
