//! Breakers flipped by the runtime config, and a private Redis SIGKILLed and restarted mid
//! coupon drop (issue 5). docs/resilience.md maps each guarantee to its test.

use crate::common;
use crate::faults;
use crate::faults::procs;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::TestApp;
use faults::*;
use floodgate_app::platform::breaker::State;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::MIGRATOR;

/// A concert behind waiting room `queue`: only configured or referenced queues can be joined.
async fn waiting_room_of_a_concert(app: &TestApp, queue: &str) {
    sqlx::query("insert into concerts (title, venue, queue_id) values ('Queued', 'Hall', $1)")
        .bind(queue)
        .execute(app.state.db.pool())
        .await
        .unwrap();
}

/// Runtime config flips a breaker to forced-open and back: behaviour follows within the
/// reader's 2 s poll (bounded here by 2 s + 3 s). PostgreSQL forced open: orders 503
/// `circuit-open` with Retry-After, cached reads and coupon rejections (Redis-only) keep
/// working, coupon grants (written before their 201) and uncached reads 503 at once. Redis forced open: coupon issue and login 503, catalog reads
/// fall through to PostgreSQL.
#[sqlx::test(migrator = "MIGRATOR")]
async fn runtime_config_forces_breakers_open_and_back(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let prefix = app.state.redis.prefix().to_owned();
    let url = faults::redis_url();
    let seller = app.seller().await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let goods = seller.goods(10, 1_000).await;
    let drop_id = campaign(&app, &admin, 100).await;
    let buyers = app.bulk_customers(3, "b").await;
    // a concert behind the waiting room `concert-42`, so joining it is allowed
    waiting_room_of_a_concert(&app, "concert-42").await;
    app.charge(&buyers[0], 10_000).await;
    assert_eq!(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{drop_id}/issue"),
            &json!({}),
            Some(&buyers[0]),
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.get(&format!("/api/v1/goods/{goods}"), None)
            .await
            .status(),
        StatusCode::OK
    );
    let auto = || breaker(10, 5, "30s", 2, "5s", "auto");

    set_breakers(
        &url,
        &prefix,
        1,
        breaker(10, 5, "30s", 2, "5s", "forced-open"),
        auto(),
    )
    .await;
    let took = eventually(
        Duration::from_secs(5),
        "orders refused after forced-open",
        || async {
            order_once(
                &app,
                &buyers[0],
                goods,
                &format!("k-{}", uuid::Uuid::new_v4()),
            )
            .await
            .status()
                == StatusCode::SERVICE_UNAVAILABLE
        },
    )
    .await;
    assert!(took <= Duration::from_secs(5));
    let started = Instant::now();
    let (status, retry, kind) =
        problem_kind(order_once(&app, &buyers[0], goods, "k-forced").await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open")
    );
    assert!(
        retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1),
        "Retry-After"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused without waiting on the database"
    );
    assert_eq!(
        app.get(&format!("/api/v1/goods/{goods}"), None)
            .await
            .status(),
        StatusCode::OK,
        "cached read served"
    );
    let (status, _, kind) = problem_kind(app.get("/api/v1/goods/987654", None).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open"),
        "nothing cached: 503 at once"
    );
    // a grant is written to PostgreSQL before its 201, so it waits for PostgreSQL; the
    // rejections (here: already issued) are Redis's alone and keep working
    let (status, retry, kind) = problem_kind(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{drop_id}/issue"),
            &json!({}),
            Some(&buyers[1]),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open"),
        "a coupon grant needs PostgreSQL"
    );
    assert!(retry.is_some());
    let (status, _, kind) = problem_kind(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{drop_id}/issue"),
            &json!({}),
            Some(&buyers[0]),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "already-issued"),
        "a coupon rejection needs only Redis"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        faults::metric(&metrics, "floodgate_circuit_state{dependency=\"postgres\"}"),
        3.0
    );
    assert!(
        faults::metric(
            &metrics,
            "floodgate_circuit_calls_total{dependency=\"postgres\",outcome=\"rejected\"}"
        ) >= 1.0
    );

    set_breakers(
        &url,
        &prefix,
        2,
        auto(),
        breaker(10, 5, "30s", 2, "5s", "forced-open"),
    )
    .await;
    eventually(
        Duration::from_secs(5),
        "orders accepted after auto",
        || async {
            order_once(
                &app,
                &buyers[0],
                goods,
                &format!("k-{}", uuid::Uuid::new_v4()),
            )
            .await
            .status()
                == StatusCode::CREATED
        },
    )
    .await;
    assert_eq!(app.state.breakers.redis.state(), State::ForcedOpen);
    let (status, retry, kind) = problem_kind(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{drop_id}/issue"),
            &json!({}),
            Some(&buyers[2]),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open")
    );
    assert!(retry.is_some());
    // the waiting room needs Redis too: joining is refused at once, not after a timeout
    let started = std::time::Instant::now();
    let (status, retry, kind) = problem_kind(
        app.post_json(
            "/api/v1/queues/concert-42/tokens",
            &json!({}),
            Some(&buyers[2]),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open")
    );
    assert!(retry.is_some());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "join refused without waiting for the 2 s Redis timeout"
    );
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "seller@example.com", "password": common::PASSWORD}),
            None,
        )
        .await;
    assert_eq!(
        login.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "login fails closed without its rate limit"
    );
    assert_eq!(
        app.get(&format!("/api/v1/goods/{goods}"), None)
            .await
            .status(),
        StatusCode::OK,
        "read falls through to PostgreSQL"
    );
    assert_eq!(
        app.get("/api/v1/goods", None).await.status(),
        StatusCode::OK
    );

    // the gauge follows the config without any call
    set_breakers(
        &url,
        &prefix,
        3,
        auto(),
        breaker(10, 5, "30s", 2, "5s", "disabled"),
    )
    .await;
    eventually(Duration::from_secs(5), "gauge shows disabled", || async {
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        faults::metric(&metrics, "floodgate_circuit_state{dependency=\"redis\"}") == 4.0
    })
    .await;

    set_breakers(&url, &prefix, 4, auto(), auto()).await;
    eventually(
        Duration::from_secs(5),
        "coupon issue back after auto",
        || async {
            app.post_json(
                &format!("/api/v1/coupon-campaigns/{drop_id}/issue"),
                &json!({}),
                Some(&buyers[2]),
            )
            .await
            .status()
                == StatusCode::CREATED
        },
    )
    .await;
    assert_eq!(app.state.breakers.postgres.state(), State::Closed);
}

/// A private Redis (AOF, fsync always) SIGKILLed and restarted mid coupon drop: no coupon
/// beyond the cap, nobody twice, every 201 persisted.
#[sqlx::test(migrator = "MIGRATOR")]
async fn redis_killed_and_restarted_mid_coupon_drop(pool: PgPool) {
    let mut server = procs::RedisServer::start().await;
    let redis_url = server.url();
    let app = TestApp::spawn_with(pool.clone(), |s| s.redis_url = redis_url.clone().into()).await;
    let prefix = app.state.redis.prefix().to_owned();
    set_breakers(
        &redis_url,
        &prefix,
        1,
        breaker(10, 5, "30s", 2, "5s", "auto"),
        breaker(10, 5, "1s", 2, "2s", "auto"),
    )
    .await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let cap = 300;
    let drop_id = campaign(&app, &admin, cap).await;
    let tokens = Arc::new(app.bulk_customers(600, "u").await);
    let app = Arc::new(app);
    let load = CouponDrop::start(&app, &tokens, drop_id, 12, Duration::from_millis(30));
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let results = load.stop().await;
    let mut winners = std::collections::HashSet::new();
    for (u, s) in &results {
        match *s {
            StatusCode::CREATED => assert!(winners.insert(*u), "user {u} got two 201s"),
            StatusCode::CONFLICT | StatusCode::GONE | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        results
            .iter()
            .any(|r| r.1 == StatusCode::SERVICE_UNAVAILABLE),
        "the outage was seen"
    );
    assert!(!winners.is_empty());
    assert!(winners.len() as i64 <= cap);
    let user_ids: Vec<i64> =
        sqlx::query_scalar("select user_id from users where email like 'u%' order by user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let winner_ids: Vec<i64> = winners.iter().map(|u| user_ids[*u]).collect();
    faults::assert_coupons_persisted(&pool, drop_id, &winner_ids, cap, Duration::from_secs(45))
        .await;
}

/// A private Redis paused with SIGSTOP (sockets open, nothing answers) under traffic: the
/// breaker opens after the guarded calls time out; then coupon issue and queue join answer
/// 503 `circuit-open` at once, login fails closed at once, and catalog reads, wallet reads
/// and orders keep working from PostgreSQL without waiting on Redis. After SIGCONT the
/// breaker closes, the invalidation the order could not deliver is replayed, and this
/// replica never serves the pre-order copy of the goods.
#[sqlx::test(migrator = "MIGRATOR")]
async fn redis_paused_with_sigstop(pool: PgPool) {
    let server = procs::RedisServer::start().await;
    let redis_url = server.url();
    let app = TestApp::spawn_with(pool.clone(), |s| {
        s.redis_url = redis_url.clone().into();
        s.redis_call_timeout_ms = 1_000;
    })
    .await;
    let prefix = app.state.redis.prefix().to_owned();
    set_breakers(
        &redis_url,
        &prefix,
        1,
        breaker(10, 5, "30s", 2, "5s", "auto"),
        breaker(6, 3, "3s", 1, "900ms", "auto"),
    )
    .await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let seller = app.seller().await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let buyer = app
        .user_with_roles("buyer@example.com", &["customer"])
        .await;
    let goods = seller.goods(10, 10).await;
    app.charge(&buyer, 1_000).await;
    let drop_id = campaign(&app, &admin, 100).await;
    waiting_room_of_a_concert(&app, "paused-room").await;
    let detail = format!("/api/v1/goods/{goods}");
    let stock = |res: reqwest::Response| async move {
        res.json::<serde_json::Value>().await.unwrap()["stock"]
            .as_i64()
            .unwrap()
    };
    // cached in Redis with stock 10
    assert_eq!(stock(app.get(&detail, None).await).await, 10);
    assert_eq!(stock(app.get(&detail, None).await).await, 10);

    server.pause(true);
    let issue = format!("/api/v1/coupon-campaigns/{drop_id}/issue");
    let empty = json!({});
    let tripping =
        futures::future::join_all((0..4).map(|_| app.post_json(&issue, &empty, Some(&buyer))))
            .await;
    for r in tripping {
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    eventually(Duration::from_secs(3), "redis breaker open", || async {
        app.state.breakers.redis.state() == State::Open
    })
    .await;

    let fast = Duration::from_millis(500);
    let started = Instant::now();
    let (status, retry, kind) =
        problem_kind(app.post_json(&issue, &json!({}), Some(&buyer)).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open")
    );
    assert!(
        retry.is_some() && started.elapsed() < fast,
        "coupon issue refused at once"
    );

    let started = Instant::now();
    let (status, _, kind) = problem_kind(
        app.post_json(
            "/api/v1/queues/paused-room/tokens",
            &json!({}),
            Some(&buyer),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open")
    );
    assert!(started.elapsed() < fast, "queue join refused at once");

    let started = Instant::now();
    let login = app
        .post_json(
            "/api/v1/auth/login",
            &json!({"email": "buyer@example.com", "password": common::PASSWORD}),
            None,
        )
        .await;
    assert_eq!(
        login.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "login fails closed"
    );
    assert!(started.elapsed() < fast, "login refused at once");

    let started = Instant::now();
    assert_eq!(
        app.get("/api/v1/wallet", Some(&buyer)).await.status(),
        StatusCode::OK
    );
    assert_eq!(stock(app.get(&detail, None).await).await, 10);
    assert!(
        started.elapsed() < fast,
        "wallet and catalog reads did not wait on Redis"
    );

    let started = Instant::now();
    let order = app
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"goods_id": goods, "quantity": 1}]}),
            Some(&buyer),
        )
        .await;
    assert_eq!(
        order.status(),
        StatusCode::CREATED,
        "orders need only PostgreSQL"
    );
    assert!(started.elapsed() < fast, "the order did not wait on Redis");
    assert_eq!(stock(app.get(&detail, None).await).await, 9);

    server.pause(false);
    // from the moment Redis answers again, this replica never shows the pre-order copy
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(2) {
        assert_eq!(
            stock(app.get(&detail, None).await).await,
            9,
            "stale copy after resume"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(Duration::from_secs(8), "redis breaker closed", || async {
        app.state.breakers.redis.state() == State::Closed
    })
    .await;
    let res = app.post_json(&issue, &json!({}), Some(&buyer)).await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "coupon issue works again"
    );
    // The invalidation the order could not deliver is replayed by the once-a-second resync,
    // which may land after the breaker closed. Until it does, reads bypass the Redis copy;
    // once it has, the next read refills the fresh copy.
    let conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let data_key = app.key(&format!("{{c:goods:{goods}}}:data"));
    eventually(
        Duration::from_secs(5),
        "fresh copy refilled after the replayed invalidation",
        || async {
            assert_eq!(stock(app.get(&detail, None).await).await, 9);
            let cached: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(&data_key)
                .arg("v1")
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            cached.is_some_and(|c| {
                serde_json::from_slice::<serde_json::Value>(&c).unwrap()["stock"] == 9
            })
        },
    )
    .await;
}
