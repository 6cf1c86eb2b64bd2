//! Property tests of the rules #15 added: HPA step policies and `selectPolicy`, per-direction
//! tolerance, the KPA windows, KEDA's fallback and the decision memory in the status.

use floodgate_crds::v1alpha1::{Campaign, FallbackBehavior};
use proptest::prelude::*;

use super::history::MAX_ENTRIES;
use super::tests::{example_policy, input, policy_strategy};
use super::*;

/// (seconds since the previous step, waiting) with latency idle: the queue alone decides,
/// so the tests can recompute the KPA averages independently.
fn queue_steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
    proptest::collection::vec((1u64..20, 0u64..200_000), 1..80)
}

struct Run {
    now: Millis,
    current: u32,
    waiting: u64,
    d: Decision,
}

fn simulate(p: &Policy, start: u32, steps: &[(u64, u64)]) -> Vec<Run> {
    let mut h = History::default();
    let (mut now, mut current) = (1_000_000u64, start);
    let mut out = Vec::new();
    for (dt, waiting) in steps {
        now += dt * 1000;
        let d = decide(
            p,
            &input(now, current, Some(*waiting), Latency::Idle),
            &mut h,
        );
        h.record_change(now, current, d.desired);
        out.push(Run {
            now,
            current,
            waiting: *waiting,
            d: d.clone(),
        });
        current = d.desired;
    }
    out
}

/// The queue's recommendation from the waiting averaged over the samples younger than
/// `window_ms` at step `i`, computed from the series itself.
fn averaged_recommendation(p: &Policy, run: &[Run], i: usize, window_ms: u64) -> u32 {
    let s = &run[i];
    let inside: Vec<f64> = run[..=i]
        .iter()
        .filter(|o| s.now - o.now < window_ms)
        .map(|o| o.waiting as f64)
        .collect();
    let avg = (inside.iter().sum::<f64>() / inside.len() as f64).round();
    let ratio = avg / (f64::from(s.current) * p.waiting_per_replica as f64);
    if s.current > 0 && ratio <= 1.0 + p.up.tolerance && ratio >= 1.0 - p.down.tolerance {
        s.current
    } else {
        (avg / p.waiting_per_replica as f64).ceil() as u32
    }
}

fn is_burst(p: &Policy, run: &[Run], i: usize) -> bool {
    let rec = averaged_recommendation(p, run, i, p.panic_window_ms);
    let current = run[i].current;
    rec > current && f64::from(rec) >= p.panic_threshold * f64::from(current.max(1))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn outside_panic_the_stable_window_average_recommends(
        p in policy_strategy(), start in 0u32..60, steps in queue_steps()
    ) {
        let run = simulate(&p, start, &steps);
        for (i, s) in run.iter().enumerate() {
            if !s.d.panic {
                prop_assert_eq!(s.d.recommendation, averaged_recommendation(&p, &run, i, p.stable_window_ms));
            }
        }
    }

    #[test]
    fn panic_follows_the_panic_window_at_once(
        p in policy_strategy(), start in 0u32..60, steps in queue_steps()
    ) {
        let run = simulate(&p, start, &steps);
        for (i, s) in run.iter().enumerate() {
            if is_burst(&p, &run, i) && p.up.select != Select::Disabled {
                let rec = averaged_recommendation(&p, &run, i, p.panic_window_ms);
                prop_assert!(s.d.panic, "a burst at step {i} without panic");
                prop_assert!(s.d.desired >= rec.min(p.max), "{} -> {} with the panic window at {rec}", s.current, s.d.desired);
            }
        }
    }

    #[test]
    fn panic_lasts_a_stable_window_after_the_last_burst(
        p in policy_strategy(), start in 0u32..60, steps in queue_steps()
    ) {
        let run = simulate(&p, start, &steps);
        for (i, s) in run.iter().enumerate() {
            let recent_burst = (0..=i).any(|j| is_burst(&p, &run, j) && s.now - run[j].now < p.stable_window_ms);
            prop_assert_eq!(s.d.panic, recent_burst, "step {}", i);
        }
    }

    #[test]
    fn select_policy_disabled_never_moves_that_direction(
        p in policy_strategy(), start in 0u32..80, steps in queue_steps(), up in any::<bool>()
    ) {
        let mut p = p;
        if up { p.up.select = Select::Disabled } else { p.down.select = Select::Disabled }
        for s in simulate(&p, start, &steps) {
            if up && s.d.desired > s.current {
                prop_assert_eq!(s.d.desired, p.min, "up {} -> {} with scale-up disabled", s.current, s.d.desired);
            }
            if !up && s.d.desired < s.current {
                prop_assert_eq!(s.d.desired, p.max, "down {} -> {} with scale-down disabled", s.current, s.d.desired);
            }
        }
    }

    #[test]
    fn each_direction_has_its_own_tolerance_band(
        p in policy_strategy(), current_off in 0u32..60, ratio_pct in 50u32..150
    ) {
        let current = (p.min + current_off % (p.max - p.min + 1)).max(1);
        let waiting = u64::from(current) * p.waiting_per_replica * u64::from(ratio_pct) / 100;
        let d = decide(&p, &input(0, current, Some(waiting), Latency::Idle), &mut History::default());
        let ratio = waiting as f64 / (f64::from(current) * p.waiting_per_replica as f64);
        let hold = ratio <= 1.0 + p.up.tolerance && ratio >= 1.0 - p.down.tolerance;
        let wanted = if hold { current } else { (waiting as f64 / p.waiting_per_replica as f64).ceil() as u32 };
        if !d.panic {
            prop_assert_eq!(d.recommendation, wanted, "ratio {}", ratio);
        }
    }

    #[test]
    fn legacy_max_step_is_two_policies_sharing_its_period(
        pods in 1i32..50, percent in 1i32..300, period in 1i32..1800, down in any::<bool>()
    ) {
        let mut legacy = example_spec();
        let mut hpa = legacy.clone();
        let yaml = format!("{{maxStep: {{pods: {pods}, percent: {percent}, period: {period}s}}}}");
        let policies = format!("{{policies: [{{type: Pods, value: {pods}, periodSeconds: {period}}}, {{type: Percent, value: {percent}, periodSeconds: {period}}}]}}");
        let (l, h) = if down { (&mut legacy.scaling.scale_down, &mut hpa.scaling.scale_down) } else { (&mut legacy.scaling.scale_up, &mut hpa.scaling.scale_up) };
        *l = serde_yaml::from_str(&yaml).expect("maxStep");
        *h = serde_yaml::from_str(&policies).expect("policies");
        prop_assert_eq!(Policy::from_spec(&legacy.scaling), Policy::from_spec(&hpa.scaling));
    }

    #[test]
    fn fallback_only_after_failure_threshold_consecutive_failed_reads(
        p in policy_strategy(), start in 0u32..80,
        steps in proptest::collection::vec((1u64..20, proptest::option::weighted(0.5, 0u64..200_000)), 1..60)
    ) {
        let threshold = p.fallback.map_or(3, |f| f.failure_threshold);
        let mut h = History::default();
        let (mut now, mut current, mut failed) = (1_000_000u64, start, 0u32);
        for (dt, waiting) in steps {
            now += dt * 1000;
            let latency = if waiting.is_some() { Latency::Idle } else { Latency::Unavailable };
            let d = decide(&p, &input(now, current, waiting, latency), &mut h);
            failed = if waiting.is_none() { failed + 1 } else { 0 };
            prop_assert_eq!(d.fallback, failed >= threshold, "{} failed reads, threshold {}", failed, threshold);
            if failed > 0 && failed < threshold {
                prop_assert_eq!(d.desired, current.clamp(p.min, p.max), "holds before the threshold");
            }
            if d.fallback && p.fallback.is_some_and(|f| f.behavior == FallbackBehavior::CurrentReplicasIfHigher) {
                prop_assert!(d.desired >= current.min(p.max), "IfHigher went down {} -> {}", current, d.desired);
            }
            h.record_change(now, current, d.desired);
            current = d.desired;
        }
    }

    #[test]
    fn a_restarted_decision_with_the_status_memory_decides_as_if_never_restarted(
        p in policy_strategy(), start in 0u32..80, steps in queue_steps(), cut in 0usize..80
    ) {
        // KPA windows under one resync: the in-memory samples a restart loses do not matter,
        // so the decisions must match exactly.
        let p = Policy { panic_window_ms: 400, stable_window_ms: 900, ..p };
        let (mut kept, mut restarted) = (History::default(), History::default());
        let (mut now, mut current) = (1_000_000u64, start);
        for (i, (dt, waiting)) in steps.iter().enumerate() {
            if i == cut.min(steps.len() - 1) {
                let json = serde_json::to_string(&restarted.to_status()).expect("json");
                restarted = History::from_status(&serde_json::from_str(&json).expect("parse"));
            }
            now += dt * 1000;
            let at = input(now, current, Some(*waiting), Latency::Idle);
            let (a, b) = (decide(&p, &at, &mut kept), decide(&p, &at, &mut restarted));
            prop_assert_eq!(&a, &b, "step {}", i);
            kept.record_change(now, current, a.desired);
            restarted.record_change(now, current, b.desired);
            current = a.desired;
        }
    }
}

fn example_spec() -> floodgate_crds::v1alpha1::CampaignSpec {
    let c: Campaign = serde_yaml::from_str(include_str!("../../../crds/examples/campaign.yaml"))
        .expect("example");
    c.spec
}

#[test]
fn fallback_behaviours_follow_keda() {
    let f = |behavior| Fallback {
        replicas: 4,
        failure_threshold: 3,
        behavior,
    };
    for (behavior, at_40, at_2) in [
        (FallbackBehavior::Static, 4, 4),
        (FallbackBehavior::CurrentReplicas, 40, 2),
        (FallbackBehavior::CurrentReplicasIfHigher, 40, 4),
        (FallbackBehavior::CurrentReplicasIfLower, 4, 2),
    ] {
        assert_eq!(
            (f(behavior).target(40), f(behavior).target(2)),
            (at_40, at_2),
            "{behavior:?}"
        );
    }
}

#[test]
fn the_example_fallback_replicas_is_static_after_three_failed_reads() {
    let p = Policy::from_spec(&example_spec().scaling);
    assert_eq!(
        p.fallback,
        Some(Fallback {
            replicas: 4,
            failure_threshold: 3,
            behavior: FallbackBehavior::Static
        })
    );
}

#[test]
fn a_steady_campaign_leaves_the_status_memory_unchanged() {
    let p = example_policy();
    let mut h = History::default();
    let mut seen = Vec::new();
    for t in 0..100u64 {
        decide(
            &p,
            &input(t * 2000, 10, Some(20_000), Latency::P95Ms(240.0)),
            &mut h,
        );
        seen.push(h.to_status());
    }
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "a steady signal changed the persisted memory: {:?}",
        seen.first()
    );
}

#[test]
fn the_status_memory_is_bounded_and_keeps_the_highest_recommendation() {
    let mut p = example_policy();
    p.down.stabilization_ms = 3_600_000;
    // Windows under one resync: every read is its own recommendation.
    (p.panic_window_ms, p.stable_window_ms) = (1, 2);
    let mut h = History::default();
    for t in 0..1000u64 {
        let waiting = if t == 3 { 80_000 } else { 2_000 * (t % 7) };
        decide(
            &p,
            &input(t * 2000, 10, Some(waiting), Latency::Idle),
            &mut h,
        );
        h.record_change(t * 2000, 10, 10 + u32::from(t % 2 == 0));
    }
    let m = h.to_status();
    assert!(m.recommendations.len() <= MAX_ENTRIES && m.changes.len() <= MAX_ENTRIES);
    let highest = m.recommendations.iter().map(|r| r.replicas).max();
    assert!(
        highest >= Some(40),
        "the burst's recommendation was merged away: {highest:?}"
    );
}

#[test]
fn the_stable_window_defaults_to_ten_panic_windows_as_the_panic_hold_did() {
    let mut spec = example_spec();
    assert_eq!(Policy::from_spec(&spec.scaling).stable_window_ms, 60_000);
    spec.scaling.panic.window = floodgate_crds::Dur::from_secs(10);
    assert_eq!(Policy::from_spec(&spec.scaling).stable_window_ms, 100_000);
    spec.scaling.panic.stable_window = Some(floodgate_crds::Dur::from_secs(30));
    assert_eq!(Policy::from_spec(&spec.scaling).stable_window_ms, 30_000);
    spec.scaling.panic.stable_window = Some(floodgate_crds::Dur::from_secs(10));
    let problems = spec_problems(&spec.scaling).join("\n");
    assert!(
        problems.contains("must be shorter than stableWindow"),
        "{problems}"
    );
}
