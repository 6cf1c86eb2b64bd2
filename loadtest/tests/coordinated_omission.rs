//! Coordinated omission: the server (in-process, on the generator's own single-threaded
//! runtime) freezes for 1 s. Iterations due during the freeze go out late; their latency
//! from the intended start must include the freeze while their service time must not.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use floodgate_loadtest::metrics::TagSet;
use floodgate_loadtest::segment::Segment;
use floodgate_loadtest::values::value;

#[tokio::test(flavor = "current_thread")]
async fn latency_from_intended_start_includes_a_stall_that_service_time_hides() {
    let armed = Instant::now();
    let stalled = Arc::new(AtomicBool::new(false));
    let router = Router::new().route(
        "/",
        get(move || {
            let stalled = stalled.clone();
            async move {
                if armed.elapsed() >= Duration::from_millis(800)
                    && !stalled.swap(true, Ordering::SeqCst)
                {
                    // A stop-the-world pause: blocks the only runtime thread, so the
                    // generator's scheduler cannot send anything for a second either.
                    std::thread::sleep(Duration::from_secs(1));
                }
                "{}"
            }
        }),
    );
    let addr = common::serve(router).await;
    let data = common::run_ceiling(
        addr,
        "scenarios:\n  open:\n    executor: constant-arrival-rate\n    rate: 100\n    duration: 3s\n    preAllocatedVUs: 200\n    maxVUs: 200\n",
        Segment::WHOLE,
    )
    .await;
    let m = &data.metrics;
    let all = TagSet::new();
    let dur = |agg| value(m, "http_req_duration", &all, agg).expect("duration");
    let svc = |agg| value(m, "http_req_service_time", &all, agg).expect("service");
    assert_eq!(m.iterations, 300, "every scheduled iteration ran");
    assert_eq!(m.dropped_iterations, 0);
    // ~100 of 300 iterations were due during the stall, late by 0–1000 ms.
    assert!(
        dur("p(95)") >= 500.0,
        "duration p95 {} ms should include the stall",
        dur("p(95)")
    );
    assert!(dur("max") >= 900.0, "duration max {}", dur("max"));
    // Only the one request that hit the stall waited on the wire.
    assert!(
        svc("p(95)") <= 200.0,
        "service p95 {} ms should not include the stall",
        svc("p(95)")
    );
    assert!(
        svc("max") >= 900.0,
        "the stalled request itself took the second: {}",
        svc("max")
    );
    // The generator knows it fell behind.
    let health = &data.generator[0];
    assert!(health.behind, "scheduler lag must be flagged: {health:?}");
    assert!(health.scheduler_lag_max_ms >= 900.0);
}
