//! End-to-end runs against in-process servers: dropped iterations, segments that add up,
//! exact merge, threshold verdicts with abortOnFail, and the summary JSON's shape.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use floodgate_loadtest::ceiling;
use floodgate_loadtest::metrics::TagSet;
use floodgate_loadtest::metrics::hist_b64;
use floodgate_loadtest::output::summary;
use floodgate_loadtest::report::RunData;
use floodgate_loadtest::segment::Segment;
use floodgate_loadtest::values::value;

#[tokio::test]
async fn busy_vus_make_the_open_model_drop_iterations() {
    let slow = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "{}"
        }),
    );
    let addr = common::serve(slow).await;
    let yaml = "scenarios:\n  s:\n    executor: constant-arrival-rate\n    rate: 50\n    duration: 1s\n    preAllocatedVUs: 1\n    maxVUs: 1\n";
    let m = common::run_ceiling(addr, yaml, Segment::WHOLE)
        .await
        .metrics;
    assert_eq!(
        m.iterations + m.dropped_iterations + m.interrupted_iterations,
        50
    );
    assert!(
        m.dropped_iterations >= 40,
        "one VU at 300 ms cannot do 50/s: {} dropped",
        m.dropped_iterations
    );
}

#[tokio::test]
async fn segments_run_the_load_exactly_once_and_merge_exactly() {
    let addr = common::serve(ceiling::router(64)).await;
    let yaml = "scenarios:\n  s:\n    executor: ramping-arrival-rate\n    startRate: 50\n    preAllocatedVUs: 20\n    stages:\n      - { duration: 1s, target: 250 }\n";
    // 150 iterations in total (the ramp's integral), split across three shards.
    let shards: Vec<RunData> = futures::future::join_all(
        (0..3).map(|index| common::run_ceiling(addr, yaml, Segment { index, count: 3 })),
    )
    .await;
    let counts: Vec<u64> = shards.iter().map(|s| s.metrics.iterations).collect();
    assert_eq!(counts, vec![50, 50, 50]);
    let mut expected = floodgate_loadtest::metrics::Metrics::default();
    for s in &shards {
        expected.merge(&s.metrics);
    }
    // Through JSON, as shards travel between machines.
    let docs: Vec<RunData> = shards
        .iter()
        .map(|s| {
            let doc = summary::build(s, &s.verdicts().expect("verdicts")).expect("summary");
            serde_json::from_value(doc["floodgate"].clone()).expect("shard data")
        })
        .collect();
    let merged = RunData::merge(docs).expect("merge");
    assert_eq!(merged.metrics.iterations, 150);
    let all = TagSet::new();
    for agg in ["p(50)", "p(95)", "p(99)", "max", "avg"] {
        assert_eq!(
            value(&merged.metrics, "http_req_duration", &all, agg),
            value(&expected, "http_req_duration", &all, agg),
            "{agg}"
        );
    }
    assert_eq!(merged.segment, Segment::WHOLE);
    // The same segment twice is refused.
    assert!(RunData::merge(vec![shards[0].clone(), shards[0].clone()]).is_err());
}

#[tokio::test]
async fn closed_model_vus_split_across_segments() {
    let addr = common::serve(ceiling::router(64)).await;
    let yaml = "scenarios:\n  s:\n    executor: constant-vus\n    vus: 5\n    duration: 300ms\n";
    let maxes: Vec<u64> = futures::future::join_all(
        (0..3).map(|index| common::run_ceiling(addr, yaml, Segment { index, count: 3 })),
    )
    .await
    .iter()
    .map(|d| d.metrics.vus_max.max)
    .collect();
    assert_eq!(maxes, vec![2, 2, 1]);
}

#[tokio::test]
async fn thresholds_decide_and_abort_on_fail_stops_early() {
    let addr = common::serve(ceiling::router(64)).await;
    let yaml = r#"
scenarios:
  s: { executor: constant-vus, vus: 2, duration: 1s }
thresholds:
  http_req_duration: ['p(95)<5000']
  "http_req_duration{name:ceiling}": ['max<0']
  checks: ['rate==1']
"#;
    let data = common::run_ceiling(addr, yaml, Segment::WHOLE).await;
    let verdicts: Vec<(String, bool)> = data
        .verdicts()
        .expect("verdicts")
        .into_iter()
        .map(|(t, ok)| (format!("{} {}", t.key, t.source), ok))
        .collect();
    assert!(
        verdicts.contains(&("http_req_duration p(95)<5000".into(), true)),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("http_req_duration{name:ceiling} max<0".into(), false)),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("checks rate==1".into(), true)),
        "{verdicts:?}"
    );
    assert!(!data.passed().expect("verdict"));

    let started = Instant::now();
    let yaml = r#"
scenarios:
  s: { executor: constant-vus, vus: 2, duration: 20s }
thresholds:
  http_reqs: [{ threshold: 'count<10', abortOnFail: true, delayAbortEval: 500ms }]
"#;
    let data = common::run_ceiling(addr, yaml, Segment::WHOLE).await;
    assert!(data.aborted);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "aborted after {:?}",
        started.elapsed()
    );
    assert!(!data.passed().expect("verdict"));
}

#[tokio::test]
async fn summary_json_has_k6_handle_summary_shape() {
    let addr = common::serve(ceiling::router(64)).await;
    let yaml = "scenarios:\n  s: { executor: constant-vus, vus: 2, duration: 500ms }\nthresholds:\n  http_req_duration: ['p(95)<5000']\n  http_req_failed: ['rate<0.01']\n";
    let data = common::run_ceiling(addr, yaml, Segment::WHOLE).await;
    let doc = summary::build(&data, &data.verdicts().expect("verdicts")).expect("summary");
    let d = &doc["metrics"]["http_req_duration"];
    assert_eq!(d["type"], "trend");
    assert_eq!(d["contains"], "time");
    for k in ["avg", "min", "med", "max", "p(90)", "p(95)"] {
        assert!(d["values"][k].is_number(), "values.{k}");
    }
    assert_eq!(d["thresholds"]["p(95)<5000"]["ok"], true);
    assert_eq!(doc["metrics"]["http_req_failed"]["type"], "rate");
    assert_eq!(doc["metrics"]["http_req_failed"]["values"]["rate"], 0.0);
    assert_eq!(doc["metrics"]["http_reqs"]["type"], "counter");
    assert!(
        doc["metrics"]["http_reqs"]["values"]["count"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(doc["metrics"]["http_req_duration{name:ceiling}"]["values"]["p(95)"].is_number());
    assert_eq!(doc["metrics"]["vus_max"]["values"]["max"], 2.0);
    let check = &doc["root_group"]["checks"][0];
    assert_eq!(check["name"], "status 200");
    assert!(check["passes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(check["fails"], 0);
    assert_eq!(doc["root_group"]["path"], "");
    assert!(doc["state"]["testRunDurationMs"].as_f64().unwrap_or(0.0) >= 500.0);
    // The serialized histograms decode to the run's own counts.
    let first = &doc["floodgate"]["metrics"]["requests"][0];
    let h =
        hist_b64::decode(first["duration"].as_str().expect("base64 histogram")).expect("decode");
    assert_eq!(h.len(), first["reqs"].as_u64().expect("reqs"));
}

#[tokio::test]
async fn think_time_before_the_first_request_is_not_latency() {
    let addr = common::serve(ceiling::router(64)).await;
    // goods-detail sleeps 1 s before its GET; it must not show as a 1 s response.
    let options = floodgate_loadtest::config::Options::from_yaml("scenarios:\n  s: { executor: constant-arrival-rate, rate: 5, duration: 1s, preAllocatedVUs: 10 }\n").expect("options");
    let data = floodgate_loadtest::runner::run(floodgate_loadtest::runner::RunConfig {
        scenario: floodgate_loadtest::scenarios::find("goods-detail").expect("scenario"),
        target: format!("http://{addr}"),
        options,
        segment: Segment::WHOLE,
        params: [("goods_id".to_string(), "1".to_string())].into(),
        influxdb: None,
        progress: false,
        request_timeout: Duration::from_secs(10),
        hooks: Default::default(),
    })
    .await
    .expect("run");
    let m = &data.metrics;
    assert_eq!(m.iterations, 5);
    let p100 = value(m, "http_req_duration", &TagSet::new(), "max").expect("duration");
    assert!(p100 < 500.0, "think time leaked into latency: {p100} ms");
    let iter = value(m, "iteration_duration", &TagSet::new(), "min").expect("iterations");
    assert!(iter >= 1000.0, "the iteration itself did sleep: {iter} ms");

    // Benchmarks switch think time off with --param think_scale=0.
    let options = floodgate_loadtest::config::Options::from_yaml(
        "scenarios:\n  s: { executor: constant-vus, vus: 1, duration: 300ms }\n",
    )
    .expect("options");
    let data = floodgate_loadtest::runner::run(floodgate_loadtest::runner::RunConfig {
        scenario: floodgate_loadtest::scenarios::find("goods-detail").expect("scenario"),
        target: format!("http://{addr}"),
        options,
        segment: Segment::WHOLE,
        params: [
            ("goods_id".to_string(), "1".to_string()),
            ("think_scale".to_string(), "0".to_string()),
        ]
        .into(),
        influxdb: None,
        progress: false,
        request_timeout: Duration::from_secs(10),
        hooks: Default::default(),
    })
    .await
    .expect("run");
    assert!(
        data.metrics.iterations > 10,
        "no think time: {} iterations in 300 ms",
        data.metrics.iterations
    );
}

#[tokio::test]
async fn ramp_down_interrupts_after_graceful_ramp_down() {
    let slow = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "{}"
        }),
    );
    let addr = common::serve(slow).await;
    // Two VUs start requests that take 3 s; the plan drops them at ~0.3–0.6 s and allows
    // 200 ms more, so they are cut off long before the gracefulStop of 30 s.
    let yaml = "scenarios:\n  s:\n    executor: ramping-vus\n    startVUs: 2\n    gracefulRampDown: 200ms\n    stages:\n      - { duration: 300ms, target: 2 }\n      - { duration: 300ms, target: 0 }\n";
    let started = Instant::now();
    let m = common::run_ceiling(addr, yaml, Segment::WHOLE)
        .await
        .metrics;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(m.interrupted_iterations, 2);
    assert_eq!(m.iterations, 0);
}

/// `--exec-at-load-start/-end` (what the bench reads the target's CPU time with): the start
/// command has finished before the first request and the end command runs after the last;
/// a failing command fails the run.
#[tokio::test]
async fn load_hooks_bracket_the_measured_load() {
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};
    fn now_ns() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    }
    let seen: Arc<Mutex<Vec<u128>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let log = log.clone();
            async move {
                log.lock().expect("lock").push(now_ns());
                "{}"
            }
        }),
    );
    let addr = common::serve(app).await;
    let dir = std::env::temp_dir().join(format!("loadtest-hooks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (start, end) = (dir.join("start"), dir.join("end"));
    let run = |hooks| {
        let options = floodgate_loadtest::config::Options::from_yaml(
            "scenarios:\n  s: { executor: constant-vus, vus: 2, duration: 300ms }\n",
        )
        .expect("options");
        floodgate_loadtest::runner::run(floodgate_loadtest::runner::RunConfig {
            scenario: floodgate_loadtest::scenarios::find("ceiling").expect("scenario"),
            target: format!("http://{addr}"),
            options,
            segment: Segment::WHOLE,
            params: Default::default(),
            influxdb: None,
            progress: false,
            request_timeout: Duration::from_secs(10),
            hooks,
        })
    };
    let data = run(floodgate_loadtest::runner::LoadHooks {
        start: Some(format!("sleep 0.2; date +%s%N > {}", start.display())),
        end: Some(format!("date +%s%N > {}", end.display())),
    })
    .await
    .expect("run");
    let read = |p: &std::path::Path| -> u128 {
        std::fs::read_to_string(p)
            .expect("hook output")
            .trim()
            .parse()
            .expect("ns")
    };
    let (started, ended) = (read(&start), read(&end));
    let times = seen.lock().expect("lock").clone();
    assert!(data.metrics.iterations > 0 && !times.is_empty());
    assert_eq!(times.len() as u64, data.metrics.iterations);
    assert!(
        times.iter().all(|t| *t > started && *t < ended),
        "a request outside the hooks"
    );

    let err = run(floodgate_loadtest::runner::LoadHooks {
        start: Some("exit 3".into()),
        end: None,
    })
    .await
    .expect_err("a failing hook fails the run");
    assert!(err.to_string().contains("--exec-at-load-start"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// One HTTP/1.1 GET over a fresh connection: the status line and the body.
async fn get_once(addr: std::net::SocketAddr) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: floor\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The Redis-read floor of `ceiling-server --redis-url` (#18) answers with the body it stored
/// in Redis, read on every request: once the key is gone it answers 503, not a copy of its own.
#[tokio::test]
async fn the_redis_floor_answers_from_redis_on_every_request() {
    let url = std::env::var("REDIS_URL")
        .expect("REDIS_URL must name the test Redis (make test starts one and sets it)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serving = url.clone();
    tokio::spawn(async move { ceiling::serve(listener, 64, Some(&serving)).await });
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("the test Redis");
    // bound already: the first request waits in the backlog until the body is stored
    let first = get_once(addr).await;
    assert!(first.0.contains("200 OK"), "{first:?}");
    assert_eq!(first.1.as_bytes(), ceiling::body(64).as_ref());
    let _: () = redis::cmd("DEL")
        .arg(ceiling::REDIS_KEY)
        .query_async(&mut conn)
        .await
        .expect("del");
    let (status, body) = get_once(addr).await;
    assert!(status.contains("503"), "{status} {body}");
    assert_eq!(body, "the body is not in Redis");
}
