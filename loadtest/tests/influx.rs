//! The InfluxDB output: samples arrive as v1 line protocol, batched, in the database named
//! by the URL path, with k6's measurement names.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use floodgate_loadtest::config::Options;
use floodgate_loadtest::runner::{RunConfig, run};
use floodgate_loadtest::scenarios;
use floodgate_loadtest::segment::Segment;

type Seen = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test]
async fn samples_are_written_as_line_protocol() {
    let seen: Seen = Arc::default();
    let router = Router::new()
        .route("/", get(|| async { "{}" }))
        .route(
            "/write",
            post(
                |State(seen): State<Seen>,
                 Query(q): Query<std::collections::HashMap<String, String>>,
                 body: String| async move {
                    seen.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((q.get("db").cloned().unwrap_or_default(), body));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(seen.clone());
    let addr = common::serve(router).await;
    let options = Options::from_yaml(
        "scenarios:\n  s: { executor: constant-vus, vus: 2, duration: 300ms }\n",
    )
    .expect("options");
    let data = run(RunConfig {
        scenario: scenarios::find("ceiling").expect("scenario"),
        target: format!("http://{addr}"),
        options,
        segment: Segment::WHOLE,
        params: Default::default(),
        influxdb: Some(format!("http://{addr}/k6db")),
        progress: false,
        request_timeout: Duration::from_secs(5),
        hooks: Default::default(),
    })
    .await
    .expect("run");
    let batches = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!batches.is_empty(), "nothing written");
    assert!(batches.iter().all(|(db, _)| db == "k6db"));
    let lines: Vec<&str> = batches.iter().flat_map(|(_, b)| b.lines()).collect();
    let reqs = lines.iter().filter(|l| l.starts_with("http_reqs,")).count() as u64;
    // Requests to /write itself go through the side client and are not measured.
    let measured = data.metrics.requests.values().map(|r| r.reqs).sum::<u64>();
    assert_eq!(reqs, measured, "one http_reqs point per request");
    let sample = lines
        .iter()
        .find(|l| l.starts_with("http_req_duration,"))
        .expect("a duration point");
    assert!(
        sample.contains("name=ceiling")
            && sample.contains("status=200")
            && sample.contains(" value="),
        "{sample}"
    );
    assert!(lines.iter().any(|l| l.starts_with("checks,")));
    assert!(lines.iter().any(|l| l.starts_with("iterations ")));
}
