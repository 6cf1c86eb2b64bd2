//! Property test of [`step_down`]: after `endsAt` the replicas step down to the
//! pre-campaign count with the campaign's scale-down policies, and never below it.

use proptest::prelude::*;

use super::tests::{Run, Step, down_limit, policy_strategy, steps_strategy};
use super::*;

/// A campaign run, then every resync after `endsAt` stepping down toward `floor`: returns
/// each (current, desired) pair of the step-down.
fn simulate_end(
    p: &Policy,
    start: u32,
    steps: &[(u64, Option<u64>, Latency)],
    floor: u32,
) -> Vec<Step> {
    let mut run = Run::new(start);
    run.campaign(p, steps);
    run.steps.clear();
    // 5 s resyncs for long enough to pass any window and any number of steps.
    for _ in 0..2_500 {
        run.now += 5_000;
        let d = step_down(p, run.now, run.current, floor, &mut run.h);
        run.apply(d);
    }
    run.steps
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
            // The campaign's scale-down step policies (checked once the campaign's own
            // changes are out of every period); Disabled does not stop the step-down.
            let down = Rules { select: if p.down.select == Select::Disabled { Select::Max } else { p.down.select }, ..p.down.clone() };
            if s.d.desired < s.current && s.now >= run[0].now + p.down.longest_period_ms() {
                let limit = down_limit(&down, &run, run[0].current, s);
                prop_assert!(s.d.desired >= limit, "down {} -> {} too fast", s.current, s.d.desired);
            }
        }
        prop_assert_eq!(run.last().map(|s| s.d.desired), Some(floor), "reaches the pre-campaign count");
    }
}
