//! The recorded drop (`testdata/drop.csv`: quiet, a spike when sales open, a long tail that
//! keeps 40 pods busy, a 420 s metrics outage mid-tail — longer than the 300 s scale-down
//! window — then the rest of the tail) replayed through [`decide`] with the example policy.
//! The assertions are the rules, not a snapshot: the case (fallback 4, 40 pods, an
//! outage longer than the window) must not walk the Deployment down with
//! `currentReplicasIfHigher`, while the legacy static `fallbackReplicas: 4` does.

use floodgate_crds::v1alpha1::FallbackBehavior;

use super::tests::{example_policy, input};
use super::*;

/// (t seconds, waiting, latency) per line of the recording.
fn recording() -> Vec<(u64, Option<u64>, Latency)> {
    include_str!("testdata/drop.csv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t = f[0].parse().expect("t");
            let waiting = f[1].parse().ok();
            let latency = f[2]
                .parse::<f64>()
                .map_or(Latency::Unavailable, Latency::P95Ms);
            (t, waiting, latency)
        })
        .collect()
}

struct Tick {
    t: u64,
    waiting: Option<u64>,
    d: Decision,
}

fn replay(p: &Policy) -> Vec<Tick> {
    let mut h = History::default();
    let mut current = 2;
    let mut out = Vec::new();
    for (t, waiting, latency) in recording() {
        let now = 1_000_000 + t * 1000;
        let d = decide(p, &input(now, current, waiting, latency), &mut h);
        h.record_change(now, current, d.desired);
        out.push(Tick {
            t,
            waiting,
            d: d.clone(),
        });
        current = d.desired;
    }
    out
}

fn with_fallback(behavior: FallbackBehavior) -> Policy {
    let mut p = example_policy();
    p.fallback = p.fallback.map(|f| Fallback { behavior, ..f });
    p
}

const SPIKE: u64 = 120;
const OUTAGE: (u64, u64) = (500, 920);

fn at(run: &[Tick], t: u64) -> &Tick {
    run.iter().find(|k| k.t == t).expect("tick")
}

/// The rules both fallbacks share: quiet at minReplicas, panic within one tick of the spike,
/// 40 through the tail before the outage, never below what the queue justifies (beyond the
/// 10 % tolerance) once it can be read again, and never down faster than the step policies.
fn common_rules(run: &[Tick]) {
    for k in run.iter().filter(|k| k.t < SPIKE) {
        assert!(
            k.d.desired == 2 && !k.d.panic,
            "quiet at t={}: {:?}",
            k.t,
            k.d
        );
    }
    let first = at(run, SPIKE);
    assert!(
        first.d.panic && first.d.desired > 2,
        "panic follows the spike's first read: {:?}",
        first.d
    );
    let full = run.iter().find(|k| k.d.desired == 40).expect("reaches 40");
    assert!(full.t <= SPIKE + 30, "40 replicas only at t={}", full.t);
    for k in run.iter().filter(|k| (full.t..OUTAGE.0).contains(&k.t)) {
        assert_eq!(k.d.desired, 40, "t={}: the tail wants >= 40", k.t);
    }
    for k in run.iter().filter(|k| k.t >= OUTAGE.1) {
        let w = k.waiting.expect("read after the outage");
        assert!(
            f64::from(k.d.desired) * 2000.0 * 1.1 >= w as f64,
            "t={}: {} replicas for {w} waiting",
            k.t,
            k.d.desired
        );
    }
    for (i, k) in run.iter().enumerate() {
        if let Some(later) = run.get(i + 12) {
            let fell = k.d.desired.saturating_sub(later.d.desired);
            // max(2 pods, 20 %) per 60 s: down to floor(80 %).
            let step = 2u32.max(k.d.desired - k.d.desired * 4 / 5);
            assert!(fell <= step, "t={} -> {}: fell {fell}", k.t, later.t);
        }
    }
}

#[test]
fn the_drop_with_current_replicas_if_higher_holds_40_through_the_outage() {
    let run = replay(&with_fallback(FallbackBehavior::CurrentReplicasIfHigher));
    common_rules(&run);
    for k in run.iter().filter(|k| (OUTAGE.0..OUTAGE.1).contains(&k.t)) {
        assert_eq!(k.d.desired, 40, "t={}: moved during the outage", k.t);
        // KEDA failureThreshold 3: reads at 500 and 505 hold, the third falls back.
        assert_eq!(k.d.fallback, k.t >= OUTAGE.0 + 10, "t={}", k.t);
    }
    // The held 40s of the outage stay in the 300 s window after it.
    assert_eq!(at(&run, OUTAGE.1 + 295).d.desired, 40);
}

#[test]
fn the_drop_with_the_legacy_static_fallback_walks_down_after_the_window() {
    // The case as it was (and as KEDA's `static` means): fallbackReplicas 4.
    let run = replay(&example_policy());
    common_rules(&run);
    let outage: Vec<&Tick> = run
        .iter()
        .filter(|k| (OUTAGE.0..OUTAGE.1).contains(&k.t))
        .collect();
    for k in &outage {
        if k.t < OUTAGE.0 + 300 {
            assert_eq!(k.d.desired, 40, "t={}: the 300 s window holds", k.t);
        }
    }
    let last = outage.last().expect("outage").d.desired;
    assert!(
        (4..40).contains(&last),
        "static fallback 4 walks down: {last}"
    );
}
