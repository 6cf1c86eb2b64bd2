//! The extra signals against real components, credentials from Secret data: a real
//! Prometheus (Debian's) with basic auth (`--web.config.file`, bcrypt), the same Prometheus
//! behind a real nginx that checks a bearer token, and a real redis-server with
//! `requirepass` and an ACL user holding a stream with a consumer group. The whole pipeline
//! runs in `run --manifests` mode with Secret manifests in the folder: it scales on the
//! triggers, and says which Secret is missing once the file is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use floodgate_crds::{
    redis_conn::RedisMode,
    v1alpha1::{PrometheusAuthRef, RedisAuthRef},
};
use floodgate_operator::{
    observe::{
        credentials::{self, Clients, Found, SecretData},
        depth::AppMetricsDepth,
        prometheus::{PromClient, trigger},
        streams::{Backlog, backlog},
        triggers::{self, Source, Trigger},
    },
    reconcile::Context,
    store::{RedisAddress, RedisTarget},
    telemetry::Metrics,
};

mod support;

use support::{Server, free_port};

fn secret(pairs: &[(&str, &str)]) -> SecretData {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn basic_ref() -> PrometheusAuthRef {
    PrometheusAuthRef {
        secret_name: "prom-auth".into(),
        bearer_token_key: None,
        username_key: Some("username".into()),
        password_key: Some("password".into()),
        ca_key: None,
    }
}

/// The client a Campaign's authRef yields for `data`.
fn client_for(auth: &PrometheusAuthRef, data: Option<&SecretData>) -> Result<PromClient, String> {
    let found = Found {
        namespace: "shop",
        name: &auth.secret_name,
        data,
    };
    let creds = credentials::prometheus(auth, &found)?;
    Clients::default().prometheus(&PromClient::default(), &creds)
}

/// Debian's Prometheus on a free port, with `web` as its `--web.config.file` when given.
async fn start_prometheus(dir: &Path, web: Option<String>, ready: &PromClient) -> (Server, String) {
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 1h\n",
    )
    .unwrap();
    let port = free_port();
    let mut cmd = Command::new("prometheus");
    cmd.arg(format!("--config.file={}/prometheus.yml", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}/data", dir.display()));
    if let Some(web) = web {
        std::fs::write(dir.join("web.yml"), web).unwrap();
        cmd.arg(format!("--web.config.file={}/web.yml", dir.display()));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian's package; scripts/test.sh installs it)");
    let server = Server(child);
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while trigger::value(ready, &url, "vector(1)").await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, url)
}

/// Prometheus with basic auth for `ops`/`s3cret` (bcrypt, as its web config wants).
async fn prometheus_with_basic_auth(dir: &Path) -> (Server, String) {
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let good = secret(&[("username", "ops"), ("password", "s3cret")]);
    let client = client_for(&basic_ref(), Some(&good)).unwrap();
    let web = format!("basic_auth_users:\n  ops: {hash}\n");
    start_prometheus(dir, Some(web), &client).await
}

#[tokio::test]
async fn promql_triggers_read_through_basic_auth_and_say_what_came_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, url) = prometheus_with_basic_auth(dir.path()).await;
    let good = secret(&[("username", "ops"), ("password", "s3cret\n")]);
    let client = client_for(&basic_ref(), Some(&good)).unwrap();
    assert_eq!(trigger::value(&client, &url, "vector(42)").await, Ok(42.0));
    assert_eq!(
        trigger::value(&client, &url, "scalar(vector(7))").await,
        Ok(7.0)
    );

    // Each answer that is not one number says what came back.
    let err = async |q: &str| trigger::value(&client, &url, q).await.expect_err(q);
    assert!(err("vector(1) == 2").await.contains("returned no series"));
    assert!(err("vector(0) / 0").await.contains("returned NaN"));
    assert!(err("vector(1) / 0").await.contains("returned +Inf"));
    let two = r#"label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")"#;
    let many = err(two).await;
    assert!(
        many.contains("2 series") && many.contains(r#""a":"x""#),
        "{many}"
    );
    assert!(err("rate(").await.contains("the query failed: "));

    // Refused credentials, and none at all, are told apart.
    let wrong = secret(&[("username", "ops"), ("password", "guess")]);
    let refused = trigger::value(
        &client_for(&basic_ref(), Some(&wrong)).unwrap(),
        &url,
        "vector(1)",
    )
    .await;
    assert_eq!(
        refused,
        Err(
            "Prometheus answered HTTP 401: the credentials from the authRef Secret were refused"
                .into()
        )
    );
    let anonymous = trigger::value(&PromClient::default(), &url, "vector(1)").await;
    assert_eq!(
        anonymous,
        Err("Prometheus answered HTTP 401: it needs credentials (set authRef)".into())
    );
    // A missing Secret or key: no client, and the message names it (never a value).
    assert_eq!(
        client_for(&basic_ref(), None).err(),
        Some("Secret shop/prom-auth not found".into())
    );
    let no_password = secret(&[("username", "ops")]);
    assert_eq!(
        client_for(&basic_ref(), Some(&no_password)).err(),
        Some(r#"Secret shop/prom-auth has no key "password""#.into())
    );
}

/// nginx in front of an open Prometheus, passing only `Authorization: Bearer <token>`.
fn nginx_bearer(dir: &Path, upstream: &str, token: &str) -> (Server, String) {
    let port = free_port();
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n  \
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      \
         if ($http_authorization != \"Bearer {token}\") {{ return 401; }}\n      \
         proxy_pass {upstream};\n    }}\n  }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let nginx = ["nginx", "/usr/sbin/nginx"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("-v")
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect(
            "nginx is not installed (Debian: apt-get install nginx; scripts/test.sh installs it)",
        );
    let child = Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg("daemon off;")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Server(child), format!("http://127.0.0.1:{port}"))
}

#[tokio::test]
async fn a_bearer_token_from_the_secret_passes_a_proxy_that_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_prometheus, upstream) = start_prometheus(dir.path(), None, &PromClient::default()).await;
    let proxy_dir = dir.path().join("nginx");
    std::fs::create_dir(&proxy_dir).unwrap();
    let (_nginx, url) = nginx_bearer(&proxy_dir, &upstream, "tok-123");
    let bearer = PrometheusAuthRef {
        secret_name: "prom-token".into(),
        bearer_token_key: Some("token".into()),
        username_key: None,
        password_key: None,
        ca_key: None,
    };
    let good = secret(&[("token", "tok-123")]);
    let client = client_for(&bearer, Some(&good)).unwrap();
    let started = Instant::now();
    let value = loop {
        match trigger::value(&client, &url, "vector(5)").await {
            Ok(v) => break v,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "through nginx: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value, 5.0);
    let wrong = secret(&[("token", "tok-999")]);
    let refused = trigger::value(
        &client_for(&bearer, Some(&wrong)).unwrap(),
        &url,
        "vector(5)",
    )
    .await;
    assert_eq!(
        refused,
        Err(
            "Prometheus answered HTTP 401: the credentials from the authRef Secret were refused"
                .into()
        )
    );
}

/// A private redis-server with `requirepass` and an ACL user `fg` that may read streams
/// `orders*` only; the stream `orders` holds 5 entries, its group `workers` has been handed 3.
async fn redis_with_a_stream(dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--requirepass", "admin-pw", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server package)");
    let server = Server(child);
    let admin = redis::Client::open(format!("redis://:admin-pw@127.0.0.1:{port}")).unwrap();
    let started = Instant::now();
    let mut conn = loop {
        match admin.get_multiplexed_async_connection().await {
            Ok(c) => break c,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let run = async |conn: &mut redis::aio::MultiplexedConnection, args: &[&str]| {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query_async::<redis::Value>(conn)
            .await
            .unwrap();
    };
    run(
        &mut conn,
        &[
            "ACL",
            "SETUSER",
            "fg",
            "on",
            ">fg-pw",
            "~orders*",
            "+@connection",
            "+xpending",
            "+xinfo|groups",
        ],
    )
    .await;
    for i in 0..5 {
        run(&mut conn, &["XADD", "orders", "*", "n", &i.to_string()]).await;
    }
    run(&mut conn, &["XGROUP", "CREATE", "orders", "workers", "0"]).await;
    run(
        &mut conn,
        &[
            "XREADGROUP",
            "GROUP",
            "workers",
            "c1",
            "COUNT",
            "3",
            "STREAMS",
            "orders",
            ">",
        ],
    )
    .await;
    (server, format!("redis://127.0.0.1:{port}"))
}

fn redis_ref() -> RedisAuthRef {
    RedisAuthRef {
        secret_name: "redis-auth".into(),
        username_key: Some("username".into()),
        password_key: Some("password".into()),
        ca_key: None,
    }
}

fn stream(
    conn: Result<floodgate_crds::redis_conn::RedisConn, String>,
    group: &str,
    backlog: Backlog,
    target: f64,
) -> Trigger {
    Trigger {
        name: format!("{group}-{backlog:?}").to_lowercase(),
        source: Source::Stream {
            conn,
            stream: "orders".into(),
            group: group.into(),
            backlog,
        },
        target,
        activation: None,
    }
}

#[tokio::test]
async fn stream_backlogs_read_with_an_acl_user_from_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (_redis, url) = redis_with_a_stream(dir.path()).await;
    let address = RedisAddress {
        mode: RedisMode::Single,
        urls: url,
        tls: Default::default(),
    };
    let clients = Clients::default();
    let conn_for = |pairs: &[(&str, &str)]| {
        let data = secret(pairs);
        let found = Found {
            namespace: "shop",
            name: "redis-auth",
            data: Some(&data),
        };
        credentials::redis(&redis_ref(), &found).and_then(|c| clients.redis(&address, &c))
    };
    let good = conn_for(&[("username", "fg"), ("password", "fg-pw")]);
    let conn = good.clone().ok().expect("a connection");
    assert_eq!(
        backlog(&conn, "orders", "workers", Backlog::Pending).await,
        Ok(3)
    );
    assert_eq!(
        backlog(&conn, "orders", "workers", Backlog::Lag).await,
        Ok(2)
    );
    let missing = backlog(&conn, "orders", "nobody", Backlog::Lag)
        .await
        .unwrap_err();
    assert_eq!(missing, "stream orders has no consumer group nobody");
    let missing = backlog(&conn, "orders", "nobody", Backlog::Pending)
        .await
        .unwrap_err();
    assert!(
        missing.starts_with("stream orders or its consumer group nobody does not exist"),
        "{missing}"
    );

    // Through the trigger reader: values, and a refused password as an unavailable trigger.
    let wrong = conn_for(&[("username", "fg"), ("password", "nope")]);
    let (readings, problems) = triggers::read(&[
        stream(good.clone(), "workers", Backlog::Pending, 1.0),
        stream(good, "workers", Backlog::Lag, 1.0),
        stream(wrong, "workers", Backlog::Pending, 1.0),
    ])
    .await;
    let values: Vec<_> = readings.iter().map(|r| r.value).collect();
    assert_eq!(values, [Some(3.0), Some(2.0), None]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(
            "trigger workers-pending: Redis refused the credentials for stream orders"
        ),
        "{problems:?}"
    );
    assert!(
        !problems[0].contains("nope"),
        "a password in a message: {problems:?}"
    );
    let no_key = conn_for(&[("username", "fg")])
        .err()
        .expect("no password key");
    assert_eq!(no_key, r#"Secret shop/redis-auth has no key "password""#);
}

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
