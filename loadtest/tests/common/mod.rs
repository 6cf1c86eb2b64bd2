//! Shared helpers for the integration tests: in-process servers and run shortcuts.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use floodgate_loadtest::config::Options;
use floodgate_loadtest::report::RunData;
use floodgate_loadtest::runner::{RunConfig, run};
use floodgate_loadtest::scenarios;
use floodgate_loadtest::segment::Segment;

/// Serves `router` on an ephemeral local port in the current runtime.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// Runs the `ceiling` scenario (one GET per iteration) with options from YAML.
pub async fn run_ceiling(addr: SocketAddr, yaml: &str, segment: Segment) -> RunData {
    let options = Options::from_yaml(yaml).expect("options");
    run(RunConfig {
        scenario: scenarios::find("ceiling").expect("ceiling scenario"),
        target: format!("http://{addr}"),
        options,
        segment,
        params: BTreeMap::new(),
        influxdb: None,
        progress: false,
        request_timeout: Duration::from_secs(10),
        hooks: Default::default(),
    })
    .await
    .expect("run")
}
