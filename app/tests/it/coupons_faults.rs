//! Coupons under Redis faults: a 201 is a persisted coupon whatever a private Redis loses
//! mid-drop (FLUSHALL, SIGKILL with `appendfsync everysec`), and loading or rebuilding a
//! campaign goes through the Redis breaker. docs/security.md maps each guarantee to its test.

use crate::common;
use crate::faults;
use crate::faults::procs;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use common::TestApp;
use faults::*;
use floodgate_app::{
    coupons::service,
    platform::{breaker::State, ids::CampaignId},
};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::MIGRATOR;

/// With the Redis breaker forced open, loading a campaign (what an issue attempt or a new
/// campaign triggers) and the admin rebuild are refused at once with `circuit-open`, instead of
/// going around the breaker to Redis.
#[sqlx::test(migrator = "MIGRATOR")]
async fn campaign_load_and_rebuild_are_refused_while_the_redis_breaker_is_open(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let id = campaign(&app, &admin, 10).await;
    let prefix = app.state.redis.prefix().to_owned();
    set_breakers(
        &redis_url(),
        &prefix,
        1,
        breaker(10, 5, "30s", 2, "5s", "auto"),
        breaker(10, 5, "30s", 2, "5s", "forced-open"),
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "redis breaker forced open",
        || async { app.state.breakers.redis.state() == State::ForcedOpen },
    )
    .await;

    let started = Instant::now();
    let loaded = service::load(&app.state, CampaignId(id)).await;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "load took {:?}",
        started.elapsed()
    );
    let e = loaded.expect_err("load went around the open Redis breaker");
    assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(e.kind(), "circuit-open");

    let started = Instant::now();
    let rebuilt = service::rebuild(&app.state, CampaignId(id)).await;
    assert!(started.elapsed() < Duration::from_millis(200));
    let e = rebuilt.expect_err("rebuild went around the open Redis breaker");
    assert_eq!(e.kind(), "circuit-open");

    let res = app
        .post_json(
            &format!("/api/v1/coupon-campaigns/{id}/rebuild"),
            &json!({}),
            Some(&admin),
        )
        .await;
    let (status, retry, kind) = problem_kind(res).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some(), "Retry-After on the refused rebuild");
    assert!(kind.ends_with("circuit-open"), "{kind}");
}

/// A 300-coupon drop by 1,500 users against a private Redis (AOF, `appendfsync everysec`)
/// that is FLUSHALLed twice and SIGKILLed once mid-drop: every user answered 201 holds a
/// coupon row in PostgreSQL as soon as the drop ends, never more than the cap, one per user.
#[sqlx::test(migrator = "MIGRATOR")]
async fn every_coupon_answered_201_is_persisted_whatever_redis_loses(pool: PgPool) {
    let mut server = procs::RedisServer::start_with_fsync("everysec").await;
    let redis_url = server.url();
    let app = TestApp::spawn_with(pool.clone(), |s| {
        s.redis_url = redis_url.clone().into();
        s.db_pool_size = 20;
    })
    .await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let cap = 300;
    let drop_id = campaign(&app, &admin, cap).await;
    let tokens = Arc::new(app.bulk_customers(1_500, "u").await);
    let app = Arc::new(app);
    let load = CouponDrop::start(&app, &tokens, drop_id, 32, Duration::from_millis(5));
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let flushall = async || {
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    };
    eventually(Duration::from_secs(20), "first grants", || async {
        load.granted() >= 40
    })
    .await;
    flushall().await;
    eventually(Duration::from_secs(20), "more grants", || async {
        load.granted() >= 120
    })
    .await;
    flushall().await;
    eventually(Duration::from_secs(20), "more grants", || async {
        load.granted() >= 200
    })
    .await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let results = load.stop().await;
    let mut winners = HashSet::new();
    for (u, s) in &results {
        match *s {
            StatusCode::CREATED => assert!(winners.insert(*u), "user {u} got two 201s"),
            StatusCode::CONFLICT | StatusCode::GONE | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        winners.len() as i64 <= cap,
        "{} users answered 201",
        winners.len()
    );
    let user_ids: Vec<i64> =
        sqlx::query_scalar("select user_id from users where email like 'u%' order by user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let winner_ids: Vec<i64> = winners.iter().map(|u| user_ids[*u]).collect();
    // a 201 is a persisted coupon: give a background writer, if any, a moment, then compare
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held: Vec<i64> = sqlx::query_scalar(
        "select user_id from coupons where campaign_id = $1 and user_id = any($2)",
    )
    .bind(drop_id)
    .bind(&winner_ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    let held: HashSet<i64> = held.into_iter().collect();
    let lost: Vec<&i64> = winner_ids.iter().filter(|u| !held.contains(u)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} users answered 201 hold no coupon: {lost:?}",
        lost.len(),
        winner_ids.len()
    );
    let (total, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct user_id) from coupons where campaign_id = $1",
    )
    .bind(drop_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(total <= cap, "{total} coupons for a cap of {cap}");
    assert_eq!(total, distinct, "one coupon per user");
}
