//! Memory stays bounded under overload (issue #13 item 13), against the real binary with
//! its default limits: 4,000 clients each open a request with a 64 KiB body and hold back
//! its last byte (the slow-body shape of an overload: every request admitted keeps its
//! body in memory until it completes). What is admitted is bounded by bytes, the rest is
//! shed at once with 503 + `Retry-After` problem+json, the operations routes still answer,
//! and the process's RSS stays under the chart's memory limit (256 MiB) throughout.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use sqlx::PgPool;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::MIGRATOR;

const CLIENTS: usize = 4_000;
const BODY: usize = 65_536;
/// `app.resources.limits.memory` in charts/floodgate/values.yaml.
const CHART_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

struct App {
    child: Child,
    addr: SocketAddr,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl App {
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the app is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status")
            * 1024
    }
}

/// The release or debug binary cargo built for this test, on the test's own database.
async fn start(pool: &PgPool) -> App {
    let db: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/services.sh env)");
    let url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL (scripts/services.sh env)");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // FLOODGATE_TEST_APP_BIN: a copy of the binary, when builds share a target directory
    let bin = std::env::var("FLOODGATE_TEST_APP_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_floodgate-app").to_owned());
    let child = Command::new(bin)
        .arg("serve")
        .env_clear()
        .env("DATABASE_URL", url)
        .env("REDIS_URL", redis)
        .env(
            "FLOODGATE_REDIS_PREFIX",
            format!("fgo:{}:", uuid::Uuid::new_v4().simple()),
        )
        .env("FLOODGATE_LISTEN_ADDR", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let app = App { child, addr };
    let started = Instant::now();
    while get(addr, "/readyz").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the app did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app
}

/// One request on a fresh connection: status and the raw response.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    (status_of(&text), text)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Opens a login with a `BODY`-byte body and sends all of it but the last byte; returns
/// the connection and what the server answered within `wait` (empty: still in progress).
async fn slow_body(addr: SocketAddr, wait: Duration) -> Option<(TcpStream, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let mut body = br#"{"email":""#.to_vec();
    body.resize(BODY - 1, b'a');
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&body).await;
    let mut buf = vec![0u8; 4096];
    let answer = match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    };
    Some((s, answer))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn overload_is_shed_with_503_and_rss_stays_under_the_chart_limit(pool: PgPool) {
    let app = start(&pool).await;
    let idle = app.rss();

    // sample RSS every 50 ms while the clients pile up and hold
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let pid = app.child.id();
    let sampler = tokio::spawn(async move {
        let mut max = 0u64;
        loop {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                && let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                max = max.max(kb * 1024);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopped.changed() => return max,
            }
        }
    });

    let started = Instant::now();
    let held: Vec<(TcpStream, String)> = stream::iter(0..CLIENTS)
        .map(|_| slow_body(app.addr, Duration::from_millis(1_500)))
        .buffer_unordered(256)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let piled_up = started.elapsed();
    // while they hold: the operations routes answer, the API sheds
    let (livez, _) = get(app.addr, "/livez").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held = app.rss();
    let _ = stop.send(true);
    let max_rss = sampler.await.unwrap();

    let shed: Vec<&String> = held
        .iter()
        .map(|(_, a)| a)
        .filter(|a| status_of(a) == 503)
        .collect();
    let well_formed = shed
        .iter()
        .filter(|a| {
            let lower = a.to_ascii_lowercase();
            lower.contains("\r\nretry-after: ")
                && lower.contains("content-type: application/problem+json")
                && lower.contains("overloaded")
        })
        .count();
    let pending = held.iter().filter(|(_, a)| a.is_empty()).count();
    eprintln!(
        "{} clients connected in {piled_up:?}: {} shed with 503 ({well_formed} with Retry-After problem+json), {pending} admitted and pending; RSS idle {} MiB, held {} MiB, max {} MiB",
        held.len(),
        shed.len(),
        idle >> 20,
        rss_held >> 20,
        max_rss >> 20
    );
    assert_eq!(livez, 200, "/livez answers while the API is saturated");
    assert!(
        max_rss < CHART_LIMIT_BYTES,
        "RSS reached {} MiB, over the chart's {} MiB limit",
        max_rss >> 20,
        CHART_LIMIT_BYTES >> 20
    );
    assert!(
        shed.len() >= CLIENTS / 2 && well_formed == shed.len(),
        "{} of {CLIENTS} slow-body requests shed with 503 ({well_formed} with Retry-After problem+json `overloaded`): overload is not shed",
        shed.len()
    );

    // once the clients go away, the API answers again
    drop(held);
    let started = Instant::now();
    loop {
        let (status, text) = get(app.addr, "/api/v1/goods").await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the API did not recover: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens a connection and sends `bytes` of a request head that never ends.
async fn slow_head(addr: SocketAddr, bytes: usize) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let mut head = b"GET /api/v1/goods HTTP/1.1\r\nHost: t\r\nX-Pad: ".to_vec();
    head.resize(bytes, b'a');
    let _ = s.write_all(&head).await;
    Some(s)
}

/// Reads until the server closes the connection (or `within` passes); what it answered.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn slow_request_heads_hold_neither_memory_nor_connections(pool: PgPool) {
    let app = start(&pool).await;
    let idle = app.rss();
    // 2,000 clients each send 60 KB of a header that never ends
    let held: Vec<TcpStream> = stream::iter(0..2_000)
        .map(|_| slow_head(app.addr, 60_000))
        .buffer_unordered(200)
        .filter_map(std::future::ready)
        .collect()
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = app.rss();
    eprintln!(
        "{} clients holding 60 KB unfinished heads: RSS idle {} MiB, held {} MiB",
        held.len(),
        idle >> 20,
        rss >> 20
    );
    assert!(
        rss < CHART_LIMIT_BYTES,
        "RSS reached {} MiB with 2,000 unfinished 60 KB heads, over the chart's {} MiB limit",
        rss >> 20,
        CHART_LIMIT_BYTES >> 20
    );
    let (livez, _) = get(app.addr, "/livez").await;
    assert_eq!(livez, 200, "the server still answers");
    drop(held);

    // a head that stops half-way is cut off by the header read timeout (5 s by default)
    let mut stalled = slow_head(app.addr, 100).await.unwrap();
    let answer = closed_within(&mut stalled, Duration::from_secs(8)).await;
    assert!(
        answer.is_some(),
        "a connection with an unfinished head was still open after 8 s"
    );
}
