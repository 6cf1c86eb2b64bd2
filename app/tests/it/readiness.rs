//! Readiness follows Redis: false while it is stopped, true again when it returns. The test
//! runs its own redis-server on a free port so it never disturbs the shared one.

use crate::common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{TestApp, expect_problem};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::PgPool;

use crate::MIGRATOR;
use crate::faults::procs::free_port;

/// Starts redis-server on `port`; panics if it exits at once (the port was taken), so the
/// test never talks to somebody else's Redis.
fn start_redis(port: u16) -> Child {
    let mut child = Command::new("redis-server")
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
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/services.sh installs it)");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "redis-server could not bind port {port}"
    );
    child
}

async fn wait_for_status(app: &TestApp, want: StatusCode) -> reqwest::Response {
    let started = Instant::now();
    loop {
        let res = app.get("/readyz", None).await;
        if res.status() == want {
            return res;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "readyz never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn readiness_follows_redis(pool: PgPool) {
    let port = free_port();
    let mut redis = start_redis(port);
    let app = TestApp::spawn_with(pool, |s| {
        s.redis_url = SecretString::from(format!("redis://127.0.0.1:{port}"))
    })
    .await;
    let ok: Value = wait_for_status(&app, StatusCode::OK)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["checks"]["redis"], true);

    redis.kill().unwrap();
    redis.wait().unwrap();
    let res = wait_for_status(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let body = expect_problem(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["checks"]["redis"], false);
    assert_eq!(body["checks"]["postgres"], true);
    // liveness is unaffected
    assert_eq!(app.get("/livez", None).await.status(), StatusCode::OK);

    let mut redis = start_redis(port);
    wait_for_status(&app, StatusCode::OK).await;
    redis.kill().unwrap();
    redis.wait().unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn draining_turns_readiness_false(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    wait_for_status(&app, StatusCode::OK).await;
    app.state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let body = expect_problem(
        app.get("/readyz", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(body["checks"]["draining"], true);
}
