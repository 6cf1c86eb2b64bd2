//! The whole pipeline in `run --manifests` mode, Secret manifests in the folder.

use super::*;

/// The app's `/metrics` for the p95 and queue signals: idle, nobody waiting.
async fn idle_app() -> String {
    let body = "floodgate_runtime_config_version 1\n\
                floodgate_http_request_duration_seconds_bucket{le=\"0.1\"} 5\n\
                floodgate_http_request_duration_seconds_bucket{le=\"+Inf\"} 5\n";
    let app =
        axum::Router::new().route("/metrics", axum::routing::get(move || async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/metrics")
}

const SECRETS: &str = "apiVersion: v1
kind: Secret
metadata: {name: prom-auth}
stringData: {username: ops, password: s3cret}
---
apiVersion: v1
kind: Secret
metadata: {name: redis-auth, namespace: default}
data: {username: Zmc=, password: ZmctcHc=}
";

fn campaign(prometheus: &str) -> String {
    let now = chrono::Utc::now();
    format!(
        "apiVersion: floodgate.dev/v1alpha1
kind: Campaign
metadata: {{name: drop}}
spec:
  target: {{deployment: shop}}
  schedule: {{startsAt: \"{}\", endsAt: \"{}\"}}
  scaling:
    minReplicas: 2
    maxReplicas: 50
    scaleUp: {{stabilization: 0s, maxStep: {{pods: 100, percent: 1000, period: 15s}}}}
    metrics: {{redisAuthRef: {{secretName: redis-auth, usernameKey: username, passwordKey: password}}}}
    triggers:
      - name: orders
        prometheus:
          serverAddress: {prometheus}
          authRef: {{secretName: prom-auth, usernameKey: username, passwordKey: password}}
          query: vector(120)
          threshold: 10
      - name: backlog
        redisStream: {{stream: orders, consumerGroup: workers, pendingEntriesCount: 1}}
",
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    )
}

/// `status.replicas` and the MetricsAvailable condition of the campaign's status file.
fn status(file: &Path) -> Option<(i64, String, String, String)> {
    let v: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    let replicas = &v["status"]["replicas"];
    let cond = v["status"]["conditions"]
        .as_sequence()?
        .iter()
        .find(|c| c["type"] == "MetricsAvailable")?;
    Some((
        replicas["desired"].as_i64()?,
        replicas["reason"].as_str()?.to_owned(),
        cond["status"].as_str()?.to_owned(),
        cond["message"].as_str().unwrap_or("").to_owned(),
    ))
}

async fn wait_for(
    file: &Path,
    what: &str,
    ok: impl Fn(&(i64, String, String, String)) -> bool,
) -> (i64, String, String, String) {
    let started = Instant::now();
    loop {
        let now = status(file);
        if let Some(s) = now.as_ref().filter(|s| ok(s)) {
            return s.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what}: last status {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_campaign_scales_on_its_triggers_with_secret_manifests_and_names_a_missing_secret() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, prom_url) = prometheus_with_basic_auth(dir.path()).await;
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir(&redis_dir).unwrap();
    let (_redis, redis_url) = redis_with_a_stream(&redis_dir).await;
    // The operator's own Redis login is the admin's; the Campaign's reads use the Secret's.
    let admin_url = redis_url.replace("redis://", "redis://:admin-pw@");
    let redis = RedisTarget::connect(RedisMode::Single, &admin_url, "fgtest:triggers:")
        .await
        .unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("campaign.yaml"), campaign(&prom_url)).unwrap();
    std::fs::write(manifests.join("secrets.yaml"), SECRETS).unwrap();
    let status_dir = dir.path().join("status");
    let platform = floodgate_operator::local::platform::LocalPlatform::new(
        idle_app().await,
        status_dir.clone(),
        2,
    )
    .with_secrets_dir(manifests.clone());
    let ctx = Arc::new(Context::new(
        platform,
        redis,
        Box::new(AppMetricsDepth),
        Arc::new(Metrics::default()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = floodgate_operator::local::run::Options {
        manifests: manifests.clone(),
        poll: Duration::from_millis(200),
    };
    let runner = tokio::spawn(floodgate_operator::local::run::run(opts, ctx, async {
        let _ = stopped.await;
    }));

    // 120 / 10 per replica = 12 beats the stream's 3 pending / 1 = 3, the idle app and the
    // empty queue; every signal was read.
    let file = status_dir.join("campaign-default-drop.yaml");
    let (desired, reason, ok, message) =
        wait_for(&file, "scaled on the trigger", |s| s.0 == 12).await;
    assert_eq!(desired, 12);
    assert!(
        reason.starts_with("trigger orders 120 / 10 per replica = 12"),
        "{reason}"
    );
    assert_eq!((ok.as_str(), message.as_str()), ("True", ""));

    // The Secrets are gone: both triggers are unavailable, each message names its Secret, and
    // the Deployment keeps its size (no scale-down on a partial picture).
    std::fs::remove_file(manifests.join("secrets.yaml")).unwrap();
    let (desired, reason, _, message) =
        wait_for(&file, "secrets missing", |s| s.2 == "False").await;
    assert!(
        message.contains("trigger orders: Secret default/prom-auth not found"),
        "{message}"
    );
    assert!(
        message.contains("trigger backlog: Secret default/redis-auth not found"),
        "{message}"
    );
    assert_eq!(desired, 12, "{reason}");
    assert!(reason.contains("a signal is unavailable"), "{reason}");
    let _ = stop.send(());
    runner.await.unwrap();
}
