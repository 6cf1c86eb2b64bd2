//! The source reports' executor shapes, verbatim, as default options. `--scale` shrinks
//! them to this machine; `--config` or flags replace them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Dur, Executor, Options, ScenarioOptions, Stage, ThresholdSpec, parse_stages};

fn stages(text: &str) -> Vec<Stage> {
    // The shapes below are literals; a typo is a programming error caught by the tests.
    parse_stages(text).unwrap_or_else(|e| unreachable!("bad built-in stages: {e}"))
}

fn secs(s: u64) -> Dur {
    Dur(Duration::from_secs(s))
}

fn one(name: &str, executor: Executor) -> Options {
    let mut o = Options::default();
    o.scenarios
        .insert(name.to_string(), ScenarioOptions::new(executor));
    o
}

fn thresholds(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<ThresholdSpec>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), vec![ThresholdSpec::Expr(v.to_string())]))
        .collect()
}

pub fn ceiling() -> Options {
    one(
        "default",
        Executor::ConstantVus {
            vus: 64,
            duration: secs(10),
        },
    )
}

/// GoodsPia: k6 at 600 VUs for 1 minute on the cached goods list.
pub fn goodspia_list() -> Options {
    one(
        "goods_list",
        Executor::ConstantVus {
            vus: 600,
            duration: secs(60),
        },
    )
}

/// GoodsPia: k6 at 200 VUs for 1 minute on cart insert.
pub fn goodspia_cart() -> Options {
    one(
        "cart_insert",
        Executor::ConstantVus {
            vus: 200,
            duration: secs(60),
        },
    )
}

/// The e-commerce report's common options: `load_test` and `peak_test` run together.
pub fn ecommerce() -> Options {
    let mut o = one(
        "load_test",
        Executor::RampingVus {
            start_vus: 0,
            stages: stages("10s:1000,30s:1000,10s:3000,30s:3000,10s:0"),
            graceful_ramp_down: secs(30),
        },
    );
    o.scenarios.insert(
        "peak_test".into(),
        ScenarioOptions::new(Executor::RampingArrivalRate {
            start_rate: 10.0,
            time_unit: secs(1),
            pre_allocated_vus: 200,
            max_vus: 500,
            stages: stages("10s:1000,20s:5000,30s:1000,10s:5000"),
        }),
    );
    o
}

/// The coupon report: nGrinder, 1000 vusers for 5 minutes (its middle run).
pub fn coupon() -> Options {
    one(
        "coupon_drop",
        Executor::ConstantVus {
            vus: 1000,
            duration: secs(300),
        },
    )
}

/// The concert k6 script: startVUs 10 → 100 → 0 with its thresholds.
pub fn concert_flow() -> Options {
    let mut o = one(
        "concert_reservation",
        Executor::RampingVus {
            start_vus: 10,
            stages: stages("10s:100,30s:100,10s:0"),
            graceful_ramp_down: secs(30),
        },
    );
    o.thresholds = thresholds(&[
        ("http_req_duration", "p(95)<2000"),
        ("http_req_failed", "rate<0.01"),
    ]);
    o
}

/// The Locust reserve-and-pay test: up to 500 users spawned at 10/s, 2 minutes.
pub fn locust_flow() -> Options {
    let mut o = one(
        "reserve_and_pay",
        Executor::RampingVus {
            start_vus: 0,
            stages: stages("50s:500,70s:500"),
            graceful_ramp_down: secs(30),
        },
    );
    o.thresholds = thresholds(&[("checks{check:flow completed}", "rate>0.99")]);
    o
}

/// The Locust token stress test: users spawned at 10/s for 600 s (reaching 6000).
pub fn token_stress() -> Options {
    one(
        "token_issue",
        Executor::RampingVus {
            start_vus: 0,
            stages: stages("600s:6000"),
            graceful_ramp_down: secs(30),
        },
    )
}
