//! The waiting room against real Redis and PostgreSQL: joining and token checks, leaving,
//! closing, live runtime-config changes of the cap and `paused`, `opensAt` with `random`
//! queueing. The crowd runs are in `queue_crowd.rs`, failover in `queue_failover.rs`.

use crate::common;
use crate::concerts_support;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::{TestApp, expect_problem};
use concerts_support::{join, set_config, users};
use floodgate_app::queue::{QueueId, pass, service};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

async fn me(app: &TestApp, queue: &str, token: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/api/v1/queues/{queue}/tokens/me")))
        .header("X-Queue-Token", token)
        .send()
        .await
        .unwrap()
}

async fn active_now(app: &TestApp, queue: &str) -> u64 {
    let mut conn = app.state.redis.raw_conn();
    let now = Utc::now().timestamp_millis();
    conn.zcount(
        app.key(&format!("{{q:{queue}}}:active")),
        format!("({now}"),
        "+inf",
    )
    .await
    .unwrap()
}

fn problem_kind(body: &Value) -> &str {
    body["type"].as_str().unwrap().rsplit('/').next().unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn joining_is_idempotent_and_tokens_are_checked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    set_config(&app, json!({"queues": {"q1": {"paused": true}}})).await;
    let people = users(&app, 3, 0).await;
    let res = join(&app, &people[0], "q1").await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["status"], "WAITING");
    assert_eq!(first["position"], 1);
    let second: Value = join(&app, &people[1], "q1").await.json().await.unwrap();
    assert_eq!(second["position"], 2);
    // the same user gets the same place back
    let again: Value = join(&app, &people[0], "q1").await.json().await.unwrap();
    assert_eq!(again["position"], 1);
    let token = again["token"].as_str().unwrap();
    let (user, claims) = pass::verify(&app.state, token, "q1").unwrap();
    assert_eq!(
        (user, claims.q.as_str(), claims.pos),
        (people[0].id, "q1", 1)
    );

    let place: Value = me(&app, "q1", second["token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(place["status"], "WAITING");
    assert_eq!(place["position"], 2);
    assert_eq!(place["ahead"], 1);
    assert_eq!(place["hold_reason"], "paused");
    assert!(place["poll_after_seconds"].as_u64().unwrap() >= 1);
    let q: Value = app
        .get("/api/v1/queues/q1", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["waiting"], 2);
    assert_eq!(q["status"], "paused");

    // forged, other-queue, missing and expired tokens
    let mut forged = token.to_owned();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let p = expect_problem(me(&app, "q1", &forged).await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem_kind(&p), "queue-pass-forged");
    let access = expect_problem(
        me(&app, "q1", &people[0].token).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert_eq!(
        problem_kind(&access),
        "queue-pass-forged",
        "an access token is not a queue token"
    );
    let p = expect_problem(me(&app, "q2", token).await, StatusCode::FORBIDDEN).await;
    assert_eq!(problem_kind(&p), "queue-pass-wrong-queue");
    let res = app
        .http
        .get(app.url("/api/v1/queues/q1/tokens/me"))
        .send()
        .await
        .unwrap();
    let p = expect_problem(res, StatusCode::FORBIDDEN).await;
    assert_eq!(problem_kind(&p), "queue-pass-missing");
    let old = pass::sign(
        &app.state,
        "q1",
        people[0].id,
        1,
        Utc::now() - chrono::Duration::hours(3),
        60,
    )
    .unwrap();
    let place: Value = me(&app, "q1", &old).await.json().await.unwrap();
    assert_eq!(place["status"], "EXPIRED");
    let old = pass::QueueToken::new(old);
    let e = service::require_pass(&app.state, Some(&old), "q1", people[0].id)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "queue-pass-expired");
    let pass = pass::QueueToken::new(token);
    let e = service::require_pass(&app.state, Some(&pass), "q1", people[1].id)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "queue-pass-wrong-user");
    let e = service::require_pass(&app.state, Some(&pass), "q1", people[0].id)
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        "queue-pass-not-admitted",
        "waiting is not admitted"
    );

    // leaving frees the place; a later join goes to the back
    let res = app
        .http
        .delete(app.url("/api/v1/queues/q1/tokens/me"))
        .header("X-Queue-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let place: Value = me(&app, "q1", token).await.json().await.unwrap();
    assert_eq!(place["status"], "EXPIRED");
    let back: Value = join(&app, &people[0], "q1").await.json().await.unwrap();
    assert_eq!(back["position"], 3);

    // bad ids, closed queues, no auth
    let p = expect_problem(
        join(&app, &people[2], "Bad_Queue").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(p["field"], "queue_id");
    let res = app
        .http
        .post(app.url("/api/v1/queues/q1/tokens"))
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNAUTHORIZED).await;
    set_config(
        &app,
        json!({"queues": {"q1": {"closesAt": "2020-01-01T00:00:00Z"}}}),
    )
    .await;
    let p = expect_problem(join(&app, &people[2], "q1").await, StatusCode::CONFLICT).await;
    assert_eq!(problem_kind(&p), "queue-closed");
    // those already in line keep their place after closing
    let kept: Value = join(&app, &people[1], "q1").await.json().await.unwrap();
    assert_eq!(kept["position"], 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn runtime_config_changes_cap_and_pause_within_two_seconds(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cfg = |max: u32, paused: bool| json!({"queues": {"live": {"maxActiveUsers": max, "admitPerMinute": 60000, "sessionTtl": "5m", "paused": paused}}});
    set_config(&app, cfg(5, false)).await;
    let q = QueueId::parse("live").unwrap();
    for i in 0..200 {
        service::join(
            &app.state,
            &q,
            floodgate_app::auth::UserId(10_000 + i),
            Utc::now(),
        )
        .await
        .unwrap();
    }
    let wait_for = |target: u64, within: Duration| {
        let app = &app;
        async move {
            let started = Instant::now();
            loop {
                let n = active_now(app, "live").await;
                if n == target {
                    return started.elapsed();
                }
                assert!(n < target, "active {n} above the cap {target}");
                assert!(
                    started.elapsed() < within,
                    "active stuck at {n}, expected {target}"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };
    wait_for(5, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(active_now(&app, "live").await, 5, "the cap holds");

    set_config(&app, cfg(20, false)).await;
    wait_for(20, Duration::from_secs(2)).await;

    set_config(&app, cfg(40, true)).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        active_now(&app, "live").await,
        20,
        "paused: nobody admitted"
    );
    let place = service::view(&app.state, &q, Utc::now()).await.unwrap();
    assert_eq!(place.status, "paused");

    set_config(&app, cfg(40, false)).await;
    wait_for(40, Duration::from_secs(2)).await;
    // lowering the cap admits nobody until sessions end; it never evicts anyone
    set_config(&app, cfg(10, false)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(active_now(&app, "live").await, 40);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("floodgate_queue_waiting{queue=\"live\"} 160"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_queue_active{queue=\"live\"} 40"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_queue_admitted_total{queue=\"live\"} 40"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn nobody_is_admitted_before_opens_at_and_random_shuffles_the_pre_queue(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let opens = Utc::now() + chrono::Duration::seconds(2);
    set_config(&app, json!({"queues": {"rnd": {"queueing": "random", "opensAt": opens, "maxActiveUsers": 1000, "admitPerMinute": 60}}})).await;
    let q = QueueId::parse("rnd").unwrap();
    let mut tokens = Vec::new();
    for i in 0..100 {
        let user = floodgate_app::auth::UserId(20_000 + i);
        tokens.push(
            service::join(&app.state, &q, user, Utc::now())
                .await
                .unwrap()
                .token,
        );
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        active_now(&app, "rnd").await,
        0,
        "pre-queue: nobody admitted before opensAt"
    );
    let place = service::me(&app.state, &q, &tokens[0], Utc::now())
        .await
        .unwrap();
    assert_eq!(place.hold_reason, Some("not-open"));
    assert_eq!(place.eta_seconds, None);

    // after the opening the pre-queue has been shuffled once: places are a permutation
    let wait = (opens - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(700);
    tokio::time::sleep(wait).await;
    let mut conn = app.state.redis.raw_conn();
    let shuffled: bool = conn.exists(app.key("{q:rnd}:shuffled")).await.unwrap();
    assert!(shuffled, "the pre-queue was shuffled at opening");
    let mut positions = Vec::new();
    for t in &tokens {
        let place = service::me(&app.state, &q, t, Utc::now()).await.unwrap();
        if let Some(p) = place.position {
            positions.push(p);
        }
    }
    // admission at 60/min has let in at most a couple since the opening
    assert!(positions.len() >= 97, "{} still waiting", positions.len());
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), positions.len(), "places are distinct");
    assert!(sorted.iter().all(|p| (1..=100).contains(p)));
    assert_ne!(
        positions, sorted,
        "random queueing must not keep the join order"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_lease_has_one_holder_until_released_or_lapsed(pool: PgPool) {
    use floodgate_app::queue::lease::{LEASE_TTL, Lease};
    let app = TestApp::spawn(pool).await;
    let redis = &app.state.redis;
    let a = Lease::new(redis, "{test:lease}:lease", "a");
    let b = Lease::new(redis, "{test:lease}:lease", "b");
    assert!(a.hold(redis).await);
    assert!(a.hold(redis).await, "the holder renews");
    assert!(!b.hold(redis).await, "nobody else takes it while held");
    b.release(redis).await;
    assert!(!b.hold(redis).await, "only the holder can release");
    a.release(redis).await;
    assert!(
        b.hold(redis).await,
        "released: the next one takes it at once"
    );
    // a holder that stops renewing loses it after the TTL
    tokio::time::sleep(LEASE_TTL + Duration::from_millis(200)).await;
    assert!(a.hold(redis).await);
}
