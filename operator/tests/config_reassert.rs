//! The operator re-asserts a lost runtime document (issue 13, item 8): `run --manifests`
//! against real Redis, a paused QueueConfig in a temporary folder, the document deleted
//! (only this test's key, never a FLUSHALL of the shared Redis). Within the QueueConfig
//! resync the document is back with the file's settings, under a version above the lost one,
//! so an app replica still running the lost version is not counted as having applied it.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use floodgate_crds::{runtime::CONFIG_KEY, v1alpha1::QueueConfig};
use floodgate_operator::{
    local::{platform::LocalPlatform, run},
    observe::depth::AppMetricsDepth,
    reconcile::{Context, queue_config::QUEUE_RESYNC},
    store::{RedisTarget, runtime_doc},
    telemetry::Metrics,
};

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
async fn a_deleted_runtime_document_is_republished_within_the_resync() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:63799".into());
    let prefix = format!("fgtest:{}:reassert:", std::process::id());
    let redis = RedisTarget::connect(&url, &prefix)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} is required: {e}"));

    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/examples/queueconfig.yaml");
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
    let platform = LocalPlatform::new(
        "http://127.0.0.1:9/metrics".into(),
        dir.path().join(".status"),
        2,
    );
    let ctx = Arc::new(Context::new(
        platform,
        redis.clone(),
        Box::new(AppMetricsDepth),
        Arc::new(Metrics::default()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = run::Options {
        manifests: dir.path().to_owned(),
        poll: Duration::from_millis(200),
    };
    let runner = tokio::spawn(run::run(opts, ctx.clone(), async {
        let _ = stopped.await;
    }));

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
