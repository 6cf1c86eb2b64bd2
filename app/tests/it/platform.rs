//! The platform around the domains: problem+json for every kind of bad request, health,
//! metrics, the OpenAPI document and docs UI, and the runtime-config reader.

use crate::common;

use std::time::{Duration, Instant};

use common::{TestApp, expect_problem};
use floodgate_app::platform::runtime_config::{PollOutcome, Reader};
use redis::AsyncCommands;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

async fn raw_post(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = app.http.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    req.send().await.unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn malformed_requests_get_precise_problem_bodies(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.body_limit_bytes = 1024).await;
    let signup = "/api/v1/auth/signup";
    let json_ct = Some("application/json");

    let b = expect_problem(
        raw_post(&app, signup, json_ct, "{not json").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("as JSON: key must be a string at line 1"),
        "{b}"
    );
    let b = expect_problem(
        raw_post(&app, signup, json_ct, "").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        b["detail"].as_str().unwrap().to_lowercase().contains("eof"),
        "{b}"
    );
    let b = expect_problem(
        raw_post(
            &app,
            signup,
            json_ct,
            r#"{"email":"a@b.co","password":"12345678"}"#,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `name`"),
        "{b}"
    );
    let b = expect_problem(
        raw_post(
            &app,
            signup,
            json_ct,
            r#"{"email":1,"password":"12345678","name":"x"}"#,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        b["detail"].as_str().unwrap().contains("invalid type"),
        "{b}"
    );
    let b = expect_problem(
        raw_post(&app, signup, json_ct, r#""just a string""#).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        b["detail"].as_str().unwrap().contains("invalid type"),
        "{b}"
    );
    let b = expect_problem(
        raw_post(&app, signup, Some("text/plain"), r#"{"email":"a@b.co"}"#).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert!(
        b["detail"].as_str().unwrap().contains("Content-Type"),
        "{b}"
    );
    expect_problem(
        raw_post(&app, signup, None, r#"{"email":"a@b.co"}"#).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let big = format!(
        r#"{{"email":"a@b.co","password":"12345678","name":"{}"}}"#,
        "x".repeat(4096)
    );
    expect_problem(
        raw_post(&app, signup, json_ct, big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    // rule violations name the field
    let b = expect_problem(
        app.post_json(
            signup,
            &json!({"email": "nope", "password": "12345678", "name": "x"}),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["field"], "email");
    let b = expect_problem(
        app.post_json(
            signup,
            &json!({"email": "a@b.co", "password": "short", "name": "x"}),
            None,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["field"], "password");

    // unknown route and wrong method
    expect_problem(
        app.get("/api/v1/nothing-here", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let res = app.get(signup, None).await;
    assert!(res.headers().get(header::ALLOW).is_some());
    expect_problem(res, StatusCode::METHOD_NOT_ALLOWED).await;

    // request ids are generated and echoed
    let res = app.get("/livez", None).await;
    assert!(res.headers().get("x-request-id").is_some());
    let res = app
        .http
        .get(app.url("/livez"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "abc-123");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn metrics_docs_and_openapi(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.signup("m@example.com").await;
    let res = app.get("/metrics", None).await;
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = res.text().await.unwrap();
    assert!(text.contains(r#"floodgate_http_request_duration_seconds_count{route="/api/v1/auth/signup",method="POST",status="201"} 1"#), "{text}");
    assert!(text.contains("floodgate_http_requests_in_flight"), "{text}");
    assert!(text.contains("floodgate_runtime_config_version"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));

    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from openapi.json"
        );
    }
    let res = app.get("/docs/", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(
        !html.contains("https://"),
        "docs page must not load external assets"
    );
    let js = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(js.status(), StatusCode::OK);
}

#[test]
fn openapi_snapshot_is_current() {
    // Generated artifact checked for drift: regenerate with
    // `UPDATE_SNAPSHOTS=1 cargo test -p floodgate-app --test it platform::openapi_snapshot`.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let current = serde_json::to_string_pretty(&floodgate_app::http::openapi()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == current,
        "docs/openapi.json is stale; rerun with UPDATE_SNAPSHOTS=1"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn runtime_config_reaches_a_running_app_within_two_seconds(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut conn = app.state.redis.raw_conn();
    assert_eq!(app.state.runtime.get().version, 0);

    let doc =
        json!({"version": 5, "queues": {"concert-42": {"maxActiveUsers": 50, "paused": true}}})
            .to_string();
    let _: () = conn.set(app.key("config"), &doc).await.unwrap();
    let _: () = conn.publish(app.key("config:changed"), 5).await.unwrap();
    let started = Instant::now();
    while app.state.runtime.get().version != 5 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "config not applied within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cfg = app.state.runtime.get();
    assert_eq!(cfg.queue("concert-42").max_active_users, 50);
    assert!(cfg.queue("concert-42").paused);
    // the reader reports what it applied
    tokio::time::sleep(Duration::from_millis(100)).await;
    let applied: Option<u64> = conn
        .hget(app.key("config:applied"), "test-replica")
        .await
        .unwrap();
    assert_eq!(applied, Some(5));

    // without a publish, the poll picks the change up within one interval
    let doc = json!({"version": 6}).to_string();
    let _: () = conn.set(app.key("config"), &doc).await.unwrap();
    let started = Instant::now();
    while app.state.runtime.get().version != 6 {
        assert!(
            started.elapsed() < Duration::from_millis(2_500),
            "config not polled within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("floodgate_runtime_config_version 6"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_invalid_runtime_config_changes_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut conn = app.state.redis.raw_conn();
    let mut reader = Reader::new(
        app.state.runtime.clone(),
        app.state.redis.clone(),
        app.state.metrics.clone(),
        "probe".into(),
    );
    let _: () = conn
        .set(
            app.key("config"),
            json!({"version": 3, "ttls": {"seatHold": "90s"}}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(reader.poll_once().await.unwrap(), PollOutcome::Applied(3));

    for bad in [
        json!({"version": 4, "queues": {"q": {"maxActiveUsers": 0}}}).to_string(),
        json!({"version": 4, "ttls": {"seatHold": "ninety seconds"}}).to_string(),
        "{not json".to_owned(),
    ] {
        let _: () = conn.set(app.key("config"), &bad).await.unwrap();
        let _: () = conn.publish(app.key("config:changed"), 4).await.unwrap();
        assert_eq!(reader.poll_once().await.unwrap(), PollOutcome::Rejected);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cfg = app.state.runtime.get();
        assert_eq!(cfg.version, 3, "{bad} was applied");
        assert_eq!(cfg.ttls.seat_hold.as_secs(), 90);
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("floodgate_runtime_config_rejected_total"),
        "{metrics}"
    );
    let rejected: f64 = metrics
        .lines()
        .find(|l| l.starts_with("floodgate_runtime_config_rejected_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rejected >= 3.0, "{metrics}");

    // a deleted document keeps the last good config (config_loss.rs has the whole story)
    let _: () = conn.del(app.key("config")).await.unwrap();
    assert_eq!(reader.poll_once().await.unwrap(), PollOutcome::Missing);
    assert_eq!(app.state.runtime.get().version, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn seeding_twice_creates_demo_data_once(pool: PgPool) {
    async fn counts(pool: &PgPool) -> Vec<i64> {
        let mut out = Vec::new();
        for table in [
            "users",
            "goods",
            "coupon_campaigns",
            "wallet_ledger",
            "sellers",
        ] {
            let sql = format!("select count(*) from {table}");
            out.push(
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(pool)
                    .await
                    .unwrap(),
            );
        }
        out
    }
    floodgate_app::seed::seed(&pool).await.unwrap();
    let first = counts(&pool).await;
    floodgate_app::seed::seed(&pool).await.unwrap();
    assert_eq!(
        counts(&pool).await,
        first,
        "reseeding must not duplicate demo data"
    );
    assert_eq!(first[1], 5, "demo goods");
    assert_eq!(first[2], 1, "demo coupon campaign");
    let balance: i64 = sqlx::query_scalar("select balance from wallets w join users u using (user_id) where u.email = 'customer@floodgate.local'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(balance, 500_000);
    let app = TestApp::spawn(pool).await;
    let res = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "admin@floodgate.local", "password": "floodgate-demo"}),
            None,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Text PostgreSQL cannot store (a NUL character, which JSON allows as `\u0000`) is bad input
/// like any other: 422 naming the problem, never a 500. Found by the contract fuzz
/// (scripts/contract-tests.sh) on `POST /goods`.
#[sqlx::test(migrator = "MIGRATOR")]
async fn text_with_a_nul_character_is_refused_not_a_server_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app
        .user_with_roles("nul@example.com", &["customer", "seller"])
        .await;
    for field in ["name", "description", "category"] {
        let mut body = json!({"name": "Hoodie", "description": "warm", "price": 1000, "stock": 1, "category": "apparel"});
        body[field] = json!("bad\u{0}text");
        let res = app.post_json("/api/v1/goods", &body, Some(&seller)).await;
        let b = expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(
            b["detail"].as_str().unwrap().contains("NUL"),
            "{field}: {b}"
        );
    }
}
