//! The scenario catalogue: the source reports' load tests as Rust async functions on the
//! Floodgate API, each with the report's original executor shape as its default.

mod api;
mod coupon;
mod flow;
mod goods;
mod order;
mod queue;
mod shapes;
mod wallet;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::Options;
use crate::metrics::Metrics;
use crate::vu::Vu;

pub use api::{ensure_logged_in, first_id};

pub type IterationFn = for<'a> fn(&'a mut Vu) -> BoxFuture<'a, anyhow::Result<()>>;
pub type VerifyFn =
    for<'a> fn(&'a mut Vu, &'a Metrics) -> BoxFuture<'a, anyhow::Result<Vec<Invariant>>>;

/// A business invariant checked after the run (no oversell, issued ≤ cap, …).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invariant {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Invariant {
    pub fn new(name: &str, ok: bool, detail: String) -> Invariant {
        Invariant {
            name: name.to_string(),
            ok,
            detail,
        }
    }
}

pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// The report's original options (executors, stages, thresholds) before `--scale`.
    pub options: fn() -> Options,
    /// Runs once before the load, e.g. to discover ids or create hot users.
    pub setup: Option<IterationFn>,
    pub iteration: IterationFn,
    pub verify: Option<VerifyFn>,
}

pub fn all() -> &'static [Scenario] {
    static ALL: &[Scenario] = &[
        Scenario {
            name: "ceiling",
            description: "bare GET of --param path (default /) at full speed: the generator's own ceiling (P6)",
            options: shapes::ceiling,
            setup: None,
            iteration: goods::ceiling,
            verify: None,
        },
        Scenario {
            name: "goods-list",
            description: "GET /goods?limit=15 by 600 looping VUs for 1 min (GoodsPia report)",
            options: shapes::goodspia_list,
            setup: None,
            iteration: goods::list,
            verify: None,
        },
        Scenario {
            name: "goods-detail",
            description: "GET /goods/{id} with e-commerce load_test (0→1000→3000 VUs) + peak_test (→5000/s)",
            options: shapes::ecommerce,
            setup: Some(goods::setup),
            iteration: goods::detail,
            verify: None,
        },
        Scenario {
            name: "cart-insert",
            description: "PUT /cart/items/{goods_id} by 200 logged-in VUs for 1 min (GoodsPia report)",
            options: shapes::goodspia_cart,
            setup: Some(goods::setup),
            iteration: goods::cart_insert,
            verify: None,
        },
        Scenario {
            name: "coupon-drop",
            description: "POST /coupon-campaigns/{id}/issue, a fresh user per iteration, 1000 vusers 5 min (coupon report)",
            options: shapes::coupon,
            setup: Some(coupon::setup),
            iteration: coupon::issue,
            verify: Some(coupon::verify),
        },
        Scenario {
            name: "balance-get",
            description: "GET /wallet of 4 hot users with sleep(1) around it, e-commerce load_test + peak_test",
            options: shapes::ecommerce,
            setup: Some(wallet::setup),
            iteration: wallet::get,
            verify: None,
        },
        Scenario {
            name: "balance-charge",
            description: "POST /wallet/charges on 4 hot users, e-commerce shapes; checks balance = ledger after",
            options: shapes::ecommerce,
            setup: Some(wallet::setup),
            iteration: wallet::charge,
            verify: Some(wallet::verify),
        },
        Scenario {
            name: "hot-order",
            description: "POST /orders of one hot goods item by 4 users, e-commerce shapes; checks no oversell",
            options: shapes::ecommerce,
            setup: Some(order::setup),
            iteration: order::order,
            verify: Some(order::verify),
        },
        Scenario {
            name: "queue-flow",
            description: "join queue → poll until ADMITTED → schedules → seats → hold → pay (concert reports)",
            options: shapes::concert_flow,
            setup: Some(queue::setup),
            iteration: queue::flow,
            verify: Some(queue::verify),
        },
        Scenario {
            name: "reserve-pay",
            description: "P9: join → poll until ADMITTED → seats → hold (409 seat-taken retried) → pay; every flow completed or failed (Locust report: 92 % failed)",
            options: shapes::locust_flow,
            setup: Some(flow::setup),
            iteration: flow::flow,
            verify: Some(queue::verify),
        },
        Scenario {
            name: "token-stress",
            description: "POST /queues/{id}/tokens by up to 6000 users spawned at 10/s, between(1,5) (Locust report)",
            options: shapes::token_stress,
            setup: Some(queue::setup),
            iteration: queue::join,
            verify: None,
        },
    ];
    ALL
}

pub fn find(name: &str) -> Option<&'static Scenario> {
    all().iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_has_a_valid_default_shape() {
        for s in all() {
            let o = (s.options)();
            assert!(!o.scenarios.is_empty(), "{} has no executor", s.name);
            crate::thresholds::parse_all(&o.thresholds)
                .unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert!(o.total_duration().as_secs() > 0, "{}", s.name);
        }
        assert!(find("hot-order").is_some());
        assert!(find("reserve-pay").is_some());
        assert!(find("nope").is_none());
    }
}
