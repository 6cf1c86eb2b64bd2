//! PostgreSQL faults with a flash sale running (issue 5): a private server paused with
//! SIGSTOP; every connection cut, slowed by 3 s, and stalled against a bulkhead, each behind a
//! TCP proxy in front of the shared server.
//! docs/resilience.md maps each guarantee to its test.

use crate::common;
use crate::faults;
use crate::faults::postgres_server;
use crate::faults::procs;
use crate::faults::proxy;

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

/// PostgreSQL paused with SIGSTOP (the postmaster and every backend of a private server)
/// beyond the timeout mid flash sale: the breaker opens within the window, writes answer 503
/// fast (no request outlives its deadline), reads are served from the cache (also stale,
/// after the Redis copy is gone) and uncached reads are refused at once; after SIGCONT the
/// breaker half-opens and closes; every 201 order is in the database, stock never negative.
#[tokio::test]
async fn postgres_paused_with_sigstop_mid_flash_sale() {
    let server = postgres_server::PostgresServer::start().await;
    let pool = server.pool(4, Duration::from_secs(5));
    MIGRATOR.run(&pool).await.unwrap();
    let app = TestApp::spawn_with(server.pool(20, Duration::from_secs(1)), |s| {
        s.db_call_timeout_ms = 1_500;
        s.db_acquire_timeout_ms = 1_000;
        s.request_timeout_ms = 4_000;
    })
    .await;
    let prefix = app.state.redis.prefix().to_owned();
    set_breakers(
        &faults::redis_url(),
        &prefix,
        1,
        breaker(10, 5, "2s", 3, "3s", "auto"),
        breaker(10, 5, "2s", 3, "3s", "auto"),
    )
    .await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let seller = app.seller().await;
    let initial = 100_000;
    let goods = seller.goods(10, initial).await;
    let buyers = app.bulk_customers(16, "b").await;
    for b in &buyers {
        app.charge(b, 1_000_000).await;
    }
    assert_eq!(
        app.get(&format!("/api/v1/goods/{goods}"), None)
            .await
            .status(),
        StatusCode::OK
    );

    let app = Arc::new(app);
    let load = Buyers::start(&app, &buyers, goods);

    tokio::time::sleep(Duration::from_secs(1)).await;
    server.pause(true);
    let stalled_at = Instant::now();
    let opened = eventually(
        Duration::from_millis(1_500 + 3_000),
        "breaker open after the stall",
        || async { app.state.breakers.postgres.state() == State::Open },
    )
    .await;
    // the Redis copy goes away: the read must come from the stale copy
    let mut conn = app.state.redis.raw_conn();
    let _: () = redis::cmd("DEL")
        .arg(app.key(&format!("{{c:goods:{goods}}}:data")))
        .query_async(&mut conn)
        .await
        .unwrap();
    let read_started = Instant::now();
    let read = app.get(&format!("/api/v1/goods/{goods}"), None).await;
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "cached read served while PostgreSQL is stalled"
    );
    assert!(
        read_started.elapsed() < Duration::from_secs(1),
        "the stale copy is served without waiting"
    );
    // reads with no cached copy go through the same breaker: refused at once, not after the
    // pool's acquire timeout
    for path in [
        "/api/v1/wallet",
        "/api/v1/wallet/transactions",
        "/api/v1/orders",
        "/api/v1/coupons",
        "/api/v1/users/me",
    ] {
        let started = Instant::now();
        let (status, retry, kind) = problem_kind(app.get(path, Some(&buyers[0])).await).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "circuit-open"),
            "{path} while PostgreSQL's breaker is open"
        );
        assert!(retry.is_some(), "{path}: Retry-After");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{path} refused at once, took {:?}",
            started.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.pause(false);
    let recovered = Instant::now();
    eventually(
        Duration::from_secs(2 + 8),
        "breaker closed after recovery",
        || async { app.state.breakers.postgres.state() == State::Closed },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (answers, acked) = load.stop().await;
    let longest = answers.iter().map(|a| a.1).max().unwrap();
    // the request timeout is 4 s; the slack absorbs a loaded machine, a hang would not fit
    assert!(
        longest < Duration::from_secs(4 + 2),
        "a request hung for {longest:?}, beyond the request timeout"
    );
    let fast_refusals = answers
        .iter()
        .filter(|(at, took, s)| {
            *at > stalled_at + opened
                && *at < recovered
                && *s == StatusCode::SERVICE_UNAVAILABLE
                && *took < Duration::from_millis(500)
        })
        .count();
    assert!(
        fast_refusals > 0,
        "writes were refused fast while the breaker was open"
    );
    assert!(
        answers
            .iter()
            .any(|(at, _, s)| *at > recovered && *s == StatusCode::CREATED),
        "orders succeed after recovery"
    );
    // give transactions whose commit was frozen with the server time to finish before checking
    tokio::time::sleep(Duration::from_millis(500)).await;
    faults::assert_orders_persisted(&pool, &acked).await;
    faults::assert_stock_and_ledgers(&pool, goods, initial).await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        faults::metric(
            &metrics,
            "floodgate_circuit_calls_total{dependency=\"postgres\",outcome=\"failure\"}"
        ) >= 5.0
    );
    let stale = "floodgate_cache_requests_total{cache=\"goods_detail\",result=\"stale\"}";
    assert!(
        faults::metric(&metrics, stale) >= 1.0,
        "the read during the stall was the stale copy"
    );
}

/// Every PostgreSQL connection cut mid flash sale (a failover or a network blip): the
/// transactions in flight fail with 503 and roll back, new connections are opened at once,
/// orders succeed again within seconds (after the breaker's open wait, if the burst of
/// failures opened it); every 201 order is in the database and stock and ledgers are
/// consistent.
#[sqlx::test(migrator = "MIGRATOR")]
async fn postgres_connections_cut_mid_flash_sale(pool: PgPool) {
    let proxy = proxy::Proxy::start(procs::database_addr()).await;
    let app = TestApp::spawn_with(
        proxied_pool(&pool, &proxy, 20, Duration::from_secs(1)),
        |s| {
            s.db_call_timeout_ms = 1_500;
            s.request_timeout_ms = 4_000;
        },
    )
    .await;
    // a pool of cut connections fails a burst of calls: the breaker may open, briefly here
    let prefix = app.state.redis.prefix().to_owned();
    let small = || breaker(10, 5, "1s", 3, "3s", "auto");
    set_breakers(&faults::redis_url(), &prefix, 1, small(), small()).await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let seller = app.seller().await;
    let initial = 100_000;
    let goods = seller.goods(10, initial).await;
    let buyers = app.bulk_customers(12, "b").await;
    for b in &buyers {
        app.charge(b, 1_000_000).await;
    }
    let app = Arc::new(app);
    let load = Buyers::start(&app, &buyers, goods);
    eventually(Duration::from_secs(10), "orders before the cut", || async {
        !load.acked.lock().unwrap().is_empty()
    })
    .await;
    // orders are group-committed: a few batches in flight at a time, each a few quick
    // statements; 50 ms per response keeps transactions open long enough for every cut to
    // land inside one
    proxy.set_latency(Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cut_at = Instant::now();
    for _ in 0..3 {
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    proxy.set_latency(Duration::ZERO);
    let recovered = Instant::now();
    let resumed = Instant::now();
    loop {
        let after: Vec<(Duration, StatusCode)> = load
            .answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.0 > recovered)
            .map(|a| (a.1, a.2))
            .collect();
        if after.iter().any(|a| a.1 == StatusCode::CREATED) {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "orders did not resume after the cuts: {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (answers, acked) = load.stop().await;

    for (_, took, s) in &answers {
        assert!(
            matches!(*s, StatusCode::CREATED | StatusCode::SERVICE_UNAVAILABLE),
            "unexpected {s}: a cut connection is an infrastructure failure, never a 500"
        );
        assert!(
            *took < Duration::from_secs(4 + 2),
            "a request hung for {took:?}, beyond the request timeout"
        );
    }
    assert!(
        answers
            .iter()
            .any(|(at, _, s)| *at < cut_at && *s == StatusCode::CREATED),
        "orders succeeded before the cut"
    );
    assert!(
        answers
            .iter()
            .any(|(_, _, s)| *s == StatusCode::SERVICE_UNAVAILABLE),
        "the cuts hit requests in flight"
    );
    assert!(
        answers
            .iter()
            .any(|(at, _, s)| *at > recovered && *s == StatusCode::CREATED),
        "orders resume"
    );
    faults::assert_orders_persisted(&pool, &acked).await;
    faults::assert_stock_and_ledgers(&pool, goods, initial).await;
}

/// Slow PostgreSQL (the proxy adds 3 s to every response): the slow-call rate opens the
/// breaker although every call succeeds; the next uncached read is refused at once.
#[sqlx::test(migrator = "MIGRATOR")]
async fn slow_postgres_opens_the_breaker_by_slow_call_rate(pool: PgPool) {
    let proxy = proxy::Proxy::start(procs::database_addr()).await;
    let app = TestApp::spawn_with(
        proxied_pool(&pool, &proxy, 8, Duration::from_secs(30)),
        |s| {
            s.db_call_timeout_ms = 30_000;
            s.request_timeout_ms = 40_000;
        },
    )
    .await;
    let prefix = app.state.redis.prefix().to_owned();
    let mut slow = breaker(3, 3, "30s", 1, "2s", "auto");
    slow["failureRateThreshold"] = json!(100.0);
    slow["slowCallRateThreshold"] = json!(50.0);
    set_breakers(
        &faults::redis_url(),
        &prefix,
        1,
        slow,
        breaker(10, 5, "30s", 2, "5s", "auto"),
    )
    .await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let seller = app.seller().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(seller.goods(10, 5).await);
    }
    // open the connections now: with the latency, a new connection alone takes many seconds
    futures::future::join_all(
        (0..4).map(|_| sqlx::query("select pg_sleep(0.2)").execute(app.state.db.pool())),
    )
    .await;

    proxy.set_latency(Duration::from_secs(3));
    let reads = futures::future::join_all(ids[..3].iter().map(|id| {
        let app = &app;
        async move { app.get(&format!("/api/v1/goods/{id}"), None).await }
    }))
    .await;
    for r in reads {
        assert_eq!(r.status(), StatusCode::OK, "slow, but answered");
    }
    assert_eq!(app.state.breakers.postgres.state(), State::Open);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        faults::metric(
            &metrics,
            "floodgate_circuit_calls_total{dependency=\"postgres\",outcome=\"slow\"}"
        ) >= 3.0
    );
    assert_eq!(
        faults::metric(
            &metrics,
            "floodgate_circuit_calls_total{dependency=\"postgres\",outcome=\"failure\"}"
        ),
        0.0
    );
    let started = Instant::now();
    let (status, _, kind) =
        problem_kind(app.get(&format!("/api/v1/goods/{}", ids[3]), None).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit-open")
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    proxy.set_latency(Duration::ZERO);
}

/// A stalled PostgreSQL holds at most its bulkhead's share of in-flight requests: with the
/// breaker disabled (so only the bulkhead protects), 8 reads wait on the stalled database,
/// every further one is refused at once with 503 `bulkhead-full` (so is a coupon grant, which
/// is written before its 201), and requests that need only Redis (coupon rejections, the
/// waiting room) and `/livez` keep answering at once. After the
/// stall the same reads succeed.
#[sqlx::test(migrator = "MIGRATOR")]
async fn stalled_postgres_holds_at_most_its_bulkhead(pool: PgPool) {
    const BULKHEAD: usize = 8;
    let proxy = proxy::Proxy::start(procs::database_addr()).await;
    let app = TestApp::spawn_with(
        proxied_pool(&pool, &proxy, 4, Duration::from_secs(5)),
        |s| {
            s.db_bulkhead = BULKHEAD as u32;
            s.db_call_timeout_ms = 3_000;
            s.db_acquire_timeout_ms = 5_000;
            s.request_timeout_ms = 8_000;
        },
    )
    .await;
    let prefix = app.state.redis.prefix().to_owned();
    set_breakers(
        &faults::redis_url(),
        &prefix,
        1,
        breaker(10, 5, "30s", 2, "5s", "disabled"),
        breaker(10, 5, "30s", 2, "5s", "auto"),
    )
    .await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    // the waiting room is configured (version 2 adds it), so joining it needs only Redis
    let mut conn = app.state.redis.raw_conn();
    let raw: String = redis::cmd("GET")
        .arg(app.key("config"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&raw).unwrap();
    doc["version"] = json!(2);
    doc["queues"] = json!({"w-room": {}});
    let _: () = redis::cmd("SET")
        .arg(app.key("config"))
        .arg(doc.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "queue configured", || async {
        app.state.runtime.get().version == 2
    })
    .await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let drop = campaign(&app, &admin, 1_000).await;
    let users = app.bulk_customers(40, "w").await;
    // the campaign is in Redis: issuing needs no PostgreSQL
    assert_eq!(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{drop}/issue"),
            &json!({}),
            Some(&users[0])
        )
        .await
        .status(),
        StatusCode::CREATED
    );

    let app = Arc::new(app);
    proxy.stall(true);
    let reads: Vec<_> = users
        .iter()
        .map(|u| {
            let (app, u) = (app.clone(), u.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let (status, _, kind) =
                    problem_kind(app.get("/api/v1/wallet", Some(&u)).await).await;
                (status, kind, started.elapsed())
            })
        })
        .collect();
    // while the reads are stuck: exactly the bulkhead's share is in flight on PostgreSQL
    eventually(Duration::from_secs(2), "bulkhead full", || async {
        app.state.metrics.encode().contains(&format!(
            "floodgate_bulkhead_in_flight{{dependency=\"postgres\"}} {BULKHEAD}"
        ))
    })
    .await;
    // the rest of the process is not held hostage: coupon rejections need only Redis, and a
    // coupon grant (written to PostgreSQL before its 201) is refused at once by the bulkhead
    let issue = format!("/api/v1/coupon-campaigns/{drop}/issue");
    let started = Instant::now();
    let (status, _, kind) =
        problem_kind(app.post_json(&issue, &json!({}), Some(&users[0])).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "already-issued")
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "coupon rejection was fast"
    );
    let started = Instant::now();
    let (status, retry, kind) =
        problem_kind(app.post_json(&issue, &json!({}), Some(&users[1])).await).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "bulkhead-full"),
        "a coupon grant needs PostgreSQL"
    );
    assert!(retry.is_some());
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "coupon grant refused at once"
    );
    for (i, u) in users[1..6].iter().enumerate() {
        let started = Instant::now();
        let res = app
            .post_json("/api/v1/queues/w-room/tokens", &json!({}), Some(u))
            .await;
        assert!(
            res.status().is_success(),
            "queue join {i} during the stall: {}",
            res.status()
        );
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "queue join {i} was fast"
        );
    }
    let started = Instant::now();
    assert_eq!(app.get("/livez", None).await.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(500));

    let mut refused = 0;
    let mut waited = 0;
    for r in reads {
        let (status, kind, took) = r.await.unwrap();
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "no read can succeed during the stall"
        );
        if kind == "bulkhead-full" {
            assert!(
                took < Duration::from_millis(500),
                "refused at once, took {took:?}"
            );
            refused += 1;
        } else {
            assert_eq!(
                kind, "dependency-timeout",
                "the admitted reads hit the call deadline"
            );
            waited += 1;
        }
    }
    assert_eq!((waited, refused), (BULKHEAD, users.len() - BULKHEAD));
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    // the reads beyond the bulkhead, and the one coupon grant
    assert_eq!(
        faults::metric(
            &metrics,
            "floodgate_bulkhead_rejected_total{dependency=\"postgres\"}"
        ),
        (users.len() - BULKHEAD + 1) as f64
    );

    proxy.stall(false);
    proxy.cut();
    eventually(
        Duration::from_secs(10),
        "reads succeed after the stall",
        || async { app.get("/api/v1/wallet", Some(&users[0])).await.status() == StatusCode::OK },
    )
    .await;
    assert!(
        app.state
            .metrics
            .encode()
            .contains("floodgate_bulkhead_in_flight{dependency=\"postgres\"} 0"),
        "every slot came back"
    );
}
