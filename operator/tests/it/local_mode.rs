//! `run --manifests` end to end, without a cluster: real Redis, a stand-in app `/metrics`
//! server, manifests in a temporary folder. Edits to the files must reach the runtime
//! document within 2 s, and the reported decision must follow the queue depth; a lost
//! document is re-asserted within the QueueConfig resync.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get};
use floodgate_crds::{
    runtime::CONFIG_KEY,
    v1alpha1::{Campaign, QueueConfig},
};
use floodgate_operator::{
    local::{platform::LocalPlatform, run},
    observe::depth::AppMetricsDepth,
    reconcile::{Context, queue_config::QUEUE_RESYNC},
    store::{RedisTarget, runtime_doc},
    telemetry::Metrics,
};

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples")
}

async fn fake_app(waiting: Arc<AtomicU64>) -> String {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let w = waiting.load(Ordering::Relaxed);
            async move {
                format!(
                    "floodgate_queue_waiting{{queue=\"concert-42\"}} {w}\nfloodgate_queue_active{{queue=\"concert-42\"}} 7\n\
                     floodgate_http_request_duration_seconds_bucket{{le=\"0.1\"}} 5\n\
                     floodgate_http_request_duration_seconds_bucket{{le=\"+Inf\"}} 5\n"
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/metrics")
}

/// `run --manifests` on `manifests`, the app's metrics at `metrics`, decisions reported into
/// `status_dir`, until the returned sender fires.
fn start(
    metrics: String,
    manifests: &Path,
    status_dir: std::path::PathBuf,
    redis: &RedisTarget,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let ctx = Arc::new(Context::new(
        LocalPlatform::new(metrics, status_dir, 2),
        redis.clone(),
        Box::new(AppMetricsDepth),
        Arc::new(Metrics::default()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = run::Options {
        manifests: manifests.to_owned(),
        poll: Duration::from_millis(200),
    };
    let runner = tokio::spawn(run::run(opts, ctx, async {
        let _ = stopped.await;
    }));
    (stop, runner)
}

async fn eventually<T>(
    what: &str,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn files_drive_the_runtime_config_and_the_reported_decision() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:63799".into());
    let prefix = format!("fgtest:{}:local:", std::process::id());
    let redis = RedisTarget::connect(floodgate_crds::redis_conn::RedisMode::Single, &url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required: {e}"));
    let waiting = Arc::new(AtomicU64::new(50_000));
    let app = fake_app(waiting.clone()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut queue: QueueConfig = serde_yaml::from_str(
        &std::fs::read_to_string(examples().join("queueconfig.yaml")).expect("example"),
    )
    .expect("qc");
    queue.spec.settings.opens_at = None;
    queue.spec.settings.closes_at = None;
    std::fs::write(
        dir.path().join("queue.yaml"),
        serde_yaml::to_string(&queue).expect("yaml"),
    )
    .expect("write");
    let mut campaign: Campaign = serde_yaml::from_str(
        &std::fs::read_to_string(examples().join("campaign.yaml")).expect("example"),
    )
    .expect("c");
    campaign.spec.schedule.starts_at = Some(chrono::Utc::now() - chrono::Duration::hours(1));
    campaign.spec.schedule.ends_at = Some(chrono::Utc::now() + chrono::Duration::hours(1));
    // Memory settings are global to a Redis; the real-Redis tests cover them.
    campaign.spec.redis.as_mut().expect("redis").maxmemory = None;
    campaign
        .spec
        .redis
        .as_mut()
        .expect("redis")
        .maxmemory_policy = None;
    std::fs::write(
        dir.path().join("campaign.yaml"),
        serde_yaml::to_string(&campaign).expect("yaml"),
    )
    .expect("write");

    let status_dir = dir.path().join(".status");
    let (stop, runner) = start(app, dir.path(), status_dir.clone(), &redis);

    // The queue is published with the file's settings.
    let max_active = async || {
        runtime_doc::read(&redis)
            .await
            .ok()
            .flatten()
            .and_then(|d| d.queues.get("concert-42").map(|q| q.max_active_users))
    };
    eventually("first publish", Duration::from_secs(5), async || {
        max_active().await.filter(|m| *m == 500)
    })
    .await;

    // Editing maxActiveUsers reaches the document within 2 s.
    queue.spec.settings.max_active_users = 50;
    std::fs::write(
        dir.path().join("queue.yaml"),
        serde_yaml::to_string(&queue).expect("yaml"),
    )
    .expect("write");
    let (_, took) = eventually("edit published", Duration::from_secs(2), async || {
        max_active().await.filter(|m| *m == 50)
    })
    .await;
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // The reported decision follows the queue: 50,000 / 2000 = 25 wanted, a burst (>= 2 x the
    // 2 running): panic follows it at once, whatever the step policies say.
    let status_file = status_dir.join("campaign-default-xmas-tickets.yaml");
    let desired = async || {
        let text = std::fs::read_to_string(&status_file).ok()?;
        let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
        v["status"]["replicas"]["desired"].as_i64()
    };
    eventually("first decision", Duration::from_secs(5), async || {
        desired().await.filter(|d| *d == 25)
    })
    .await;
    let queue_status = status_dir.join("queueconfig-default-concert-42.yaml");
    eventually("queue status", Duration::from_secs(5), async || {
        std::fs::read_to_string(&queue_status)
            .ok()
            .filter(|t| t.contains("waiting: 50000") && t.contains("active: 7"))
    })
    .await;

    // Deleting the campaign's file is deleting the campaign: its queue leaves the document.
    std::fs::remove_file(dir.path().join("campaign.yaml")).expect("rm");
    eventually("queue retired", Duration::from_secs(5), async || {
        runtime_doc::read(&redis)
            .await
            .ok()
            .flatten()
            .filter(|d| !d.queues.contains_key("concert-42"))
    })
    .await;
    assert!(
        !status_file.exists(),
        "the removed campaign's status file goes too"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("stops")
        .expect("no panic");
}

/// The operator re-asserts a lost runtime document (issue 13, item 8): a paused QueueConfig
/// in a temporary folder, the document deleted (only this test's key, never a FLUSHALL of
/// the shared Redis). Within the QueueConfig resync the document is back with the file's
/// settings, under a version above the lost one, so an app replica still running the lost
/// version is not counted as having applied it.
#[tokio::test]
async fn a_deleted_runtime_document_is_republished_within_the_resync() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:63799".into());
    let prefix = format!("fgtest:{}:reassert:", std::process::id());
    let redis = RedisTarget::connect(floodgate_crds::redis_conn::RedisMode::Single, &url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required: {e}"));

    let dir = tempfile::tempdir().expect("tempdir");
    let example = examples().join("queueconfig.yaml");
    let mut queue: QueueConfig =
        serde_yaml::from_str(&std::fs::read_to_string(example).expect("example")).expect("qc");
    queue.spec.settings.opens_at = None;
    queue.spec.settings.closes_at = None;
    queue.spec.settings.paused = true;
    let write = |q: &QueueConfig| {
        std::fs::write(
            dir.path().join("queue.yaml"),
            serde_yaml::to_string(q).expect("yaml"),
        )
        .expect("write")
    };
    write(&queue);

    // No app serves metrics here: the scrape fails and the reconcile carries on.
    let (stop, runner) = start(
        "http://127.0.0.1:9/metrics".into(),
        dir.path(),
        dir.path().join(".status"),
        &redis,
    );

    let published = async |max: u32| {
        runtime_doc::read(&redis).await.ok().flatten().filter(|d| {
            d.queues
                .get("concert-42")
                .is_some_and(|q| q.paused && q.max_active_users == max)
        })
    };
    eventually("first publish", Duration::from_secs(5), async || {
        published(500).await
    })
    .await;
    // two edits: the document is at version 3
    for max in [400, 300] {
        queue.spec.settings.max_active_users = max;
        write(&queue);
        eventually("edit published", Duration::from_secs(5), async || {
            published(max).await
        })
        .await;
    }
    let lost = runtime_doc::read(&redis)
        .await
        .expect("read")
        .expect("doc")
        .version;
    assert!(lost >= 3, "version {lost}");

    let mut conn = redis.conn.clone();
    let removed: i64 = redis::cmd("DEL")
        .arg(redis.key(CONFIG_KEY))
        .query_async(&mut conn)
        .await
        .expect("del");
    assert_eq!(removed, 1);
    let (doc, took) = eventually(
        "the lost document re-asserted",
        QUEUE_RESYNC + Duration::from_secs(2),
        async || published(300).await,
    )
    .await;
    eprintln!(
        "re-asserted as version {} after {took:?} (lost version {lost})",
        doc.version
    );
    assert!(
        doc.version > lost,
        "re-asserted as version {}, not above the lost version {lost}",
        doc.version
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .expect("stops")
        .expect("no panic");
}
