//! What one hostile client can do to a pod or to other users, against the real binary where
//! the process matters: a flood of logins (memory), forged `X-Forwarded-For` through a real
//! nginx (the per-IP auth limit), custom HTTP methods (metric series), and a listener off
//! loopback without a JWT secret (a public signing key). docs/security.md maps each
//! guarantee to its test.

use crate::common;
use crate::faults::procs;
use crate::support::replicas;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{PASSWORD, TestApp};
use reqwest::{StatusCode, header};
use serde_json::json;
use sqlx::PgPool;

use crate::MIGRATOR;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// `app.resources.limits.memory` of the chart's default values, in bytes (the pod's limit:
/// past it the kernel OOM-kills the app).
fn chart_app_memory_limit() -> u64 {
    let values = std::fs::read_to_string(repo_root().join("charts/floodgate/values.yaml")).unwrap();
    let app = values
        .split("\napp:\n")
        .nth(1)
        .expect("values.yaml has an app: block");
    let limits = app.split("\n    limits:\n").nth(1).expect("app limits");
    let line = limits.lines().next().unwrap().trim();
    let mib: u64 = line
        .strip_prefix("memory: ")
        .and_then(|v| v.strip_suffix("Mi"))
        .unwrap_or_else(|| panic!("app memory limit in Mi expected, got {line:?}"))
        .parse()
        .unwrap();
    mib << 20
}

/// `app.passwordHashConcurrency` of the chart's default values.
fn chart_password_hash_concurrency() -> String {
    let values = std::fs::read_to_string(repo_root().join("charts/floodgate/values.yaml")).unwrap();
    values
        .lines()
        .find_map(|l| l.strip_prefix("  passwordHashConcurrency: "))
        .expect("values.yaml sets app.passwordHashConcurrency")
        .trim()
        .to_owned()
}

/// VmHWM (peak resident set) of a process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb << 10)
}

/// One sample of `/metrics` (0 if absent).
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> f64 {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// 500 concurrent logins (250 accounts with the right password, 250 unknown emails, which
/// hash against the dummy hash) against the real binary with the chart's hashing setting
/// (`app.passwordHashConcurrency`):
/// the process's peak RSS stays under the chart's memory limit, no more hashes run at once
/// than the cap, the excess is answered 503 problem+json with `Retry-After` at once, and
/// nothing is a 500. A watchdog kills the app the moment its RSS crosses the limit, as the
/// kernel would in the pod.
#[sqlx::test(migrator = "MIGRATOR")]
async fn login_flood_keeps_memory_under_the_chart_limit(pool: PgPool) {
    const LOGINS: usize = 500;
    let limit = chart_app_memory_limit();
    let cap = chart_password_hash_concurrency();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let redis_url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| floodgate_app::config::DEFAULT_REDIS_URL.into());
    let app = procs::AppProcess::start_with(
        &procs::database_url(&pool, None),
        &redis_url,
        &prefix,
        dir.path(),
        &[
            ("FLOODGATE_AUTH_LIMIT_PER_IP", "1000000"),
            ("FLOODGATE_PASSWORD_HASH_CONCURRENCY", &cap),
        ],
    )
    .await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(LOGINS + 10)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // one real account through the API, then 249 more with the same argon2 hash
    let res = http
        .post(app.url("/api/v1/auth/signup"))
        .json(&json!({"email": "flood0@example.com", "password": PASSWORD, "name": "Flood"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    sqlx::query(
        "insert into users (email, password_hash, name)
         select 'flood' || g || '@example.com', (select password_hash from users where email = 'flood0@example.com'), 'Flood'
         from generate_series(1, 249) g",
    )
    .execute(&pool)
    .await
    .unwrap();

    let pid = app.pid();
    let baseline = peak_rss(pid).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let watchdog = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(rss) = peak_rss(pid) else { return };
                peak.fetch_max(rss, Ordering::Relaxed);
                if rss >= limit {
                    // what the kernel does to the pod at its memory limit
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let logins = (0..LOGINS).map(|i| {
        let (email, password) = if i % 2 == 0 {
            (format!("flood{}@example.com", i / 2), PASSWORD)
        } else {
            (format!("nobody{i}@example.com"), "a wrong password")
        };
        let req = http
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"email": email, "password": password}));
        async move {
            let sent = Instant::now();
            match req.send().await {
                Ok(res) => {
                    let status = res.status();
                    let retry = res.headers().get(header::RETRY_AFTER).cloned();
                    let ct = res.headers().get(header::CONTENT_TYPE).cloned();
                    let body = res.text().await.unwrap_or_default();
                    Ok((status, retry, ct, body, sent.elapsed()))
                }
                Err(e) => Err(e.to_string()),
            }
        }
    });
    let results = futures::future::join_all(logins).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    watchdog.await.unwrap();
    let peak = peak.load(Ordering::Relaxed).max(peak_rss(pid).unwrap_or(0));
    eprintln!(
        "{LOGINS} concurrent logins in {took:?}: peak RSS {} MiB (baseline {} MiB, limit {} MiB)",
        peak >> 20,
        baseline >> 20,
        limit >> 20
    );
    assert!(
        peak < limit,
        "peak RSS {} MiB reached the chart's memory limit of {} MiB during {LOGINS} concurrent logins \
         (the pod would be OOM-killed)",
        peak >> 20,
        limit >> 20
    );

    let mut counts = std::collections::BTreeMap::<u16, usize>::new();
    for r in &results {
        let (status, retry, ct, body, elapsed) = r.as_ref().unwrap_or_else(|e| {
            panic!("a login got no answer: {e}");
        });
        *counts.entry(status.as_u16()).or_default() += 1;
        assert!(
            [200, 401, 503].contains(&status.as_u16()),
            "unexpected {status}: {body}"
        );
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(retry.is_some(), "503 without Retry-After: {body}");
            assert_eq!(
                ct.as_ref().map(|v| v.to_str().unwrap()),
                Some("application/problem+json"),
                "{body}"
            );
            assert!(
                *elapsed < Duration::from_secs(5),
                "a refused login waited {elapsed:?}"
            );
        }
    }
    eprintln!("statuses: {counts:?}");
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "a burst of {LOGINS} logins met no bound: {counts:?}"
    );
    assert!(
        counts.get(&200).copied().unwrap_or(0) > 0,
        "no login succeeded during the burst: {counts:?}"
    );
    let metrics = app.url("/metrics");
    let most = metric(&http, &metrics, "floodgate_password_hashes_in_flight_peak").await;
    let refused = metric(&http, &metrics, "floodgate_password_hash_rejected_total").await;
    eprintln!("hashes in flight at most: {most}, refused: {refused}");
    assert!(
        most >= 1.0 && most <= cap.parse().unwrap(),
        "{most} hashes ran at once; the cap is {cap}"
    );
    assert_eq!(
        refused as usize, counts[&503],
        "every 503 is a refused hash"
    );
}

/// A client whose connections come from `from` (any 127/8 address is this machine).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn login_status(client: &reqwest::Client, url: &str, i: usize, forged: &str) -> u16 {
    client
        .post(url)
        .header("x-forwarded-for", forged)
        .header("x-real-ip", forged)
        .json(&json!({"email": format!("nobody{i}@example.com"), "password": "a wrong password"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Forged `X-Forwarded-For` headers sent through a real nginx in front of the real binary
/// (header use and the trusted proxy configured as for the chart's ingress): each client is
/// limited by its own address whatever it writes in the header, another client behind the
/// same proxy keeps its own allowance, and a client reaching the app directly (not through
/// a trusted proxy) has its header ignored.
#[sqlx::test(migrator = "MIGRATOR")]
async fn forged_forwarded_for_does_not_escape_the_per_ip_auth_limit(pool: PgPool) {
    const LIMIT: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let redis_url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| floodgate_app::config::DEFAULT_REDIS_URL.into());
    let app = procs::AppProcess::start_with(
        &procs::database_url(&pool, None),
        &redis_url,
        &prefix,
        dir.path(),
        &[
            ("FLOODGATE_AUTH_LIMIT_PER_IP", "5"),
            ("FLOODGATE_AUTH_LIMIT_PER_EMAIL", "1000"),
            ("FLOODGATE_CLIENT_IP_HEADER", "x-forwarded-for"),
            // nginx connects to the app from 127.0.0.1; the clients come from 127.0.0.2-4
            ("FLOODGATE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    // nginx from deploy/nginx/floodgate.conf.template, as `make run REPLICAS=N` runs it
    let nginx = replicas::Nginx::start(&[app.addr]).await;
    let login = nginx.url("/api/v1/auth/login");

    let attacker = client_from("127.0.0.2");
    let mut statuses = Vec::new();
    for i in 0..3 * LIMIT {
        // a new address each time, alone, as a list, and with junk
        let forged = match i % 3 {
            0 => format!("203.0.113.{i}"),
            1 => format!("198.51.100.{i}, 203.0.113.{i}"),
            _ => format!("not-an-ip, 192.0.2.{i}"),
        };
        statuses.push(login_status(&attacker, &login, i, &forged).await);
    }
    let allowed = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (allowed, limited),
        (LIMIT, 2 * LIMIT),
        "forged X-Forwarded-For escaped the per-IP auth limit of {LIMIT}: statuses {statuses:?}"
    );

    // another client behind the same proxy is its own client
    let neighbour = client_from("127.0.0.3");
    assert_eq!(
        login_status(&neighbour, &login, 100, "127.0.0.2").await,
        401,
        "a second client behind the proxy was limited with the first"
    );

    // straight to the app: the peer is no trusted proxy, so its header is ignored
    let direct = client_from("127.0.0.4");
    let direct_url = app.url("/api/v1/auth/login");
    let mut statuses = Vec::new();
    for i in 0..2 * LIMIT {
        let forged = format!("203.0.113.{}", 100 + i);
        statuses.push(login_status(&direct, &direct_url, 200 + i, &forged).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        LIMIT,
        "a direct client's forged header was believed: statuses {statuses:?}"
    );
}

/// Requests with made-up HTTP methods all share the `other` method label: a client cannot
/// create new metric series (each one costs memory in the app and in Prometheus).
#[sqlx::test(migrator = "MIGRATOR")]
async fn custom_http_methods_share_one_metric_label(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("FLOOD{i}").as_bytes()).unwrap();
        let res = app
            .http
            .request(method, app.url("/api/v1/goods"))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("floodgate_http_request_duration_seconds_count"))
        .collect();
    assert!(
        !series.iter().any(|l| l.contains("method=\"FLOOD")),
        "custom methods became metric labels: {series:#?}"
    );
    assert!(
        series.iter().any(|l| l.contains("method=\"other\"")),
        "no `other` series: {series:#?}"
    );
    let methods: std::collections::BTreeSet<&str> = series
        .iter()
        .filter_map(|l| l.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(methods.len() <= 10, "{methods:?}");
}

/// The binary, told to listen on every interface with no JWT secret: it refuses to start,
/// naming the setting, instead of signing with the built-in development key that anyone can
/// read in the source. On loopback it starts, with a warning.
#[tokio::test]
async fn no_built_in_signing_key_off_loopback() {
    let port = procs::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_floodgate-app"))
        .arg("serve")
        .env_remove("FLOODGATE_JWT_SECRET")
        .env_remove("FLOODGATE_ENV")
        .env("FLOODGATE_LISTEN_ADDR", format!("0.0.0.0:{port}"))
        .env(
            "FLOODGATE_REDIS_PREFIX",
            format!("fgt:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "floodgate-app kept running on 0.0.0.0:{port} without FLOODGATE_JWT_SECRET: \
                 it signs tokens with the built-in development key"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "exited with success: {text}");
    assert!(
        text.contains("FLOODGATE_JWT_SECRET") && text.contains("0.0.0.0"),
        "the error does not name the setting and the address: {text}"
    );
}

/// Without a JWT secret on a loopback address (a developer's machine) the app starts, and
/// says loudly that it signs with the public development key.
#[sqlx::test(migrator = "MIGRATOR")]
async fn built_in_signing_key_on_loopback_warns(pool: PgPool) {
    assert!(
        std::env::var_os("FLOODGATE_JWT_SECRET").is_none(),
        "unset FLOODGATE_JWT_SECRET to run this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let redis_url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| floodgate_app::config::DEFAULT_REDIS_URL.into());
    let app = procs::AppProcess::start(
        &procs::database_url(&pool, None),
        &redis_url,
        &prefix,
        dir.path(),
    )
    .await;
    let res = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let log = std::fs::read_to_string(dir.path().join("app.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains("\"WARN\"")
            && l.contains("FLOODGATE_JWT_SECRET")
            && l.contains("development key")),
        "no warning about the built-in key in the log: {log}"
    );
}
