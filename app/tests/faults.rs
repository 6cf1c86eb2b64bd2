//! Fault injection with load running (issue 5): a breaker forced open and back by the runtime
//! config, PostgreSQL stalled and slowed behind a proxy, a private Redis SIGKILLed and
//! restarted mid coupon drop, the app binary SIGKILLed mid flash sale. Each test checks what
//! clients saw and that nothing acknowledged was lost. docs/resilience.md maps guarantees to
//! these tests.
#![allow(clippy::unwrap_used)]

#[path = "common/mod.rs"]
mod common;
#[path = "faults/procs.rs"]
mod procs;
#[path = "faults/proxy.rs"]
mod proxy;
#[path = "faults/support.rs"]
mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::TestApp;
use floodgate_app::platform::breaker::State;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::{PgPool, postgres::PgPoolOptions};
use support::{breaker, eventually, set_breakers};

const MIGRATOR: &sqlx::migrate::Migrator = &floodgate_app::platform::db::MIGRATOR;

async fn new_goods(app: &TestApp, seller: &str, price: i64, stock: i64) -> i64 {
    let res = app
        .post_json(
            "/api/v1/goods",
            &json!({"name": "flash", "price": price, "stock": stock}),
            Some(seller),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn charge(app: &TestApp, token: &str, amount: i64) {
    assert_eq!(
        app.post_json(
            "/api/v1/wallet/charges",
            &json!({"amount": amount}),
            Some(token)
        )
        .await
        .status(),
        StatusCode::CREATED
    );
}

async fn campaign(app: &TestApp, admin: &str, total: i64) -> i64 {
    let now = chrono::Utc::now();
    let body = json!({"name": "drop", "discount_amount": 10, "total_quantity": total,
        "starts_at": now - chrono::Duration::seconds(1), "ends_at": now + chrono::Duration::hours(1)});
    let res = app
        .post_json("/api/v1/coupon-campaigns", &body, Some(admin))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn problem_kind(res: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let status = res.status();
    let retry = res
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    let kind = body["type"]
        .as_str()
        .unwrap_or("")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_owned();
    (status, retry, kind)
}

async fn order_once(app: &TestApp, token: &str, goods: i64, key: &str) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"items": [{"goods_id": goods, "quantity": 1}]}))
        .send()
        .await
        .unwrap()
}

/// Runtime config flips a breaker to forced-open and back: behaviour follows within the
/// reader's 2 s poll (bounded here by 2 s + 3 s). PostgreSQL forced open: orders 503
/// `circuit-open` with Retry-After, cached reads and the Redis-only coupon issue keep working,
/// uncached reads 503 at once. Redis forced open: coupon issue and login 503, catalog reads
/// fall through to PostgreSQL.
#[sqlx::test(migrator = "MIGRATOR")]
async fn runtime_config_forces_breakers_open_and_back(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let prefix = app.state.redis.prefix().to_owned();
    let url = support::redis_url();
    let seller = app
        .user_with_roles("seller@example.com", &["customer", "seller"])
        .await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let goods = new_goods(&app, &seller, 10, 1_000).await;
    let drop_id = campaign(&app, &admin, 100).await;
    let buyers = app.bulk_customers(3, "b").await;
    charge(&app, &buyers[0], 10_000).await;
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
    let issued = app
        .post_json(
            &format!("/api/v1/coupon-campaigns/{drop_id}/issue"),
            &json!({}),
            Some(&buyers[1]),
        )
        .await;
    assert_eq!(
        issued.status(),
        StatusCode::CREATED,
        "coupon issue needs only Redis"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        support::metric(&metrics, "floodgate_circuit_state{dependency=\"postgres\"}"),
        3.0
    );
    assert!(
        support::metric(
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
        support::metric(&metrics, "floodgate_circuit_state{dependency=\"redis\"}") == 4.0
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

/// A pool for the app that reaches this test's database through `proxy`.
fn proxied_pool(pool: &PgPool, proxy: &proxy::Proxy, size: u32, acquire: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire)
        .connect_lazy(&procs::database_url(pool, Some(proxy.addr)))
        .unwrap()
}

/// Buyers ordering one unit at a time in a loop (each order with its own Idempotency-Key),
/// recording every answer and the ids of the orders answered 201.
struct Buyers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    answers: Arc<Mutex<Vec<(Instant, Duration, StatusCode)>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Buyers {
    fn start(app: &Arc<TestApp>, tokens: &[String], goods: i64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let workers = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let (app, token, stop, acked, answers) = (
                    app.clone(),
                    token.clone(),
                    stop.clone(),
                    acked.clone(),
                    answers.clone(),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let started = Instant::now();
                        let res = order_once(&app, &token, goods, &format!("o-{i}-{n}")).await;
                        let status = res.status();
                        if status == StatusCode::CREATED {
                            let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
                            acked.lock().unwrap().push(id);
                        }
                        answers
                            .lock()
                            .unwrap()
                            .push((started, started.elapsed(), status));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            acked,
            answers,
            workers,
        }
    }

    /// Stops the load; returns every answer and the acknowledged order ids.
    async fn stop(self) -> (Vec<(Instant, Duration, StatusCode)>, Vec<i64>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let answers = self.answers.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().clone();
        (answers, acked)
    }
}

/// PostgreSQL stalled (like SIGSTOP) beyond the timeout mid flash sale: the breaker opens
/// within the window, writes answer 503 fast (no request outlives its deadline), reads are
/// served from the cache (also stale, after the Redis copy is gone), the breaker half-opens
/// and closes after recovery; every 201 order is in the database, stock never negative.
#[sqlx::test(migrator = "MIGRATOR")]
async fn postgres_stalled_mid_flash_sale(pool: PgPool) {
    let proxy = proxy::Proxy::start(procs::database_addr()).await;
    let app = TestApp::spawn_with(
        proxied_pool(&pool, &proxy, 20, Duration::from_secs(1)),
        |s| {
            s.db_call_timeout_ms = 1_500;
            s.db_acquire_timeout_ms = 1_000;
            s.request_timeout_ms = 4_000;
        },
    )
    .await;
    let prefix = app.state.redis.prefix().to_owned();
    set_breakers(
        &support::redis_url(),
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
    let seller = app
        .user_with_roles("seller@example.com", &["customer", "seller"])
        .await;
    let initial = 100_000;
    let goods = new_goods(&app, &seller, 10, initial).await;
    let buyers = app.bulk_customers(16, "b").await;
    for b in &buyers {
        charge(&app, b, 1_000_000).await;
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
    proxy.stall(true);
    let stalled_at = Instant::now();
    let opened = eventually(
        Duration::from_millis(1_500 + 3_000),
        "breaker open after the stall",
        || async { app.state.breakers.postgres.state() == State::Open },
    )
    .await;
    // the Redis copy goes away: the read must come from the stale copy
    let mut conn = app.state.redis.conn();
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.stall(false);
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
    // give transactions whose commit was held in the proxy time to finish before checking
    tokio::time::sleep(Duration::from_millis(500)).await;
    support::assert_orders_persisted(&pool, &acked).await;
    support::assert_stock_and_ledgers(&pool, goods, initial).await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        support::metric(
            &metrics,
            "floodgate_circuit_calls_total{dependency=\"postgres\",outcome=\"failure\"}"
        ) >= 5.0
    );
    let stale = "floodgate_cache_requests_total{cache=\"goods_detail\",result=\"stale\"}";
    assert!(
        support::metric(&metrics, stale) >= 1.0,
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
    set_breakers(&support::redis_url(), &prefix, 1, small(), small()).await;
    eventually(Duration::from_secs(5), "config applied", || async {
        app.state.runtime.get().version == 1
    })
    .await;
    let seller = app
        .user_with_roles("seller@example.com", &["customer", "seller"])
        .await;
    let initial = 100_000;
    let goods = new_goods(&app, &seller, 10, initial).await;
    let buyers = app.bulk_customers(12, "b").await;
    for b in &buyers {
        charge(&app, b, 1_000_000).await;
    }
    let app = Arc::new(app);
    let load = Buyers::start(&app, &buyers, goods);
    eventually(Duration::from_secs(10), "orders before the cut", || async {
        !load.acked.lock().unwrap().is_empty()
    })
    .await;
    let cut_at = Instant::now();
    for _ in 0..3 {
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
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
    support::assert_orders_persisted(&pool, &acked).await;
    support::assert_stock_and_ledgers(&pool, goods, initial).await;
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
        &support::redis_url(),
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
    let seller = app
        .user_with_roles("seller@example.com", &["customer", "seller"])
        .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(new_goods(&app, &seller, 10, 5).await);
    }
    // open the connections now: with the latency, a new connection alone takes many seconds
    futures::future::join_all(
        (0..4).map(|_| sqlx::query("select pg_sleep(0.2)").execute(&app.state.db)),
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
        support::metric(
            &metrics,
            "floodgate_circuit_calls_total{dependency=\"postgres\",outcome=\"slow\"}"
        ) >= 3.0
    );
    assert_eq!(
        support::metric(
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
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::<(usize, StatusCode)>::new()));
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let (app, tokens, stop, results) =
                (app.clone(), tokens.clone(), stop.clone(), results.clone());
            tokio::spawn(async move {
                let path = format!("/api/v1/coupon-campaigns/{drop_id}/issue");
                let mut u = w;
                while !stop.load(Ordering::Relaxed) {
                    let status = app
                        .post_json(&path, &json!({}), Some(&tokens[u % tokens.len()]))
                        .await
                        .status();
                    results.lock().unwrap().push((u % tokens.len(), status));
                    u += 12;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let results = results.lock().unwrap().clone();
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
    support::assert_coupons_persisted(&pool, drop_id, &winner_ids, cap, Duration::from_secs(45))
        .await;
}

/// The app binary SIGKILLed mid flash sale and restarted: every 201 order is in the
/// database, stock and wallet ledgers are consistent, and the coupon grants the dead process
/// left pending in the stream are persisted by the restarted one.
#[sqlx::test(migrator = "MIGRATOR")]
async fn app_killed_mid_flash_sale_and_restarted(pool: PgPool) {
    use floodgate_app::auth::{Role, UserId};
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let redis_url = support::redis_url();
    let mut child = procs::AppProcess::start(
        &procs::database_url(&pool, None),
        &redis_url,
        &prefix,
        dir.path(),
    )
    .await;
    // only for signing tokens with the same dev key as the child; runs no background loops
    let mut settings = floodgate_app::config::Settings::defaults();
    settings.redis_prefix = prefix.clone();
    let keys = floodgate_app::server::build_state(settings, pool.clone()).unwrap();
    let users: Vec<i64> = sqlx::query_scalar(
        "insert into users (email, password_hash, name, roles)
         select 'k' || g || '@example.com', 'not-a-hash', 'bulk', array['customer', 'seller', 'admin'] from generate_series(1, 41) g
         returning user_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let tokens: Vec<String> = users
        .iter()
        .map(|u| {
            keys.jwt
                .issue(UserId(*u), &[Role::Customer, Role::Seller, Role::Admin])
                .unwrap()
        })
        .collect();
    let (staff, buyers) = tokens.split_first().unwrap();
    let http = reqwest::Client::new();
    let post = |url: String, token: &str, body: Value, key: Option<String>| {
        let mut req = http.post(url).bearer_auth(token).json(&body);
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        req.send()
    };
    let initial = 60;
    let res = post(
        child.url("/api/v1/goods"),
        staff,
        json!({"name": "flash", "price": 1000, "stock": initial}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let goods = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let now = chrono::Utc::now();
    let body = json!({"name": "drop", "discount_amount": 10, "total_quantity": 25,
        "starts_at": now - chrono::Duration::seconds(1), "ends_at": now + chrono::Duration::hours(1)});
    let res = post(child.url("/api/v1/coupon-campaigns"), staff, body, None)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let drop_id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    for b in buyers {
        let res = post(
            child.url("/api/v1/wallet/charges"),
            b,
            json!({"amount": 5_000}),
            None,
        )
        .await
        .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    let base = Arc::new(Mutex::new(child.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let acked_orders = Arc::new(Mutex::new(Vec::<i64>::new()));
    let coupon_winners = Arc::new(Mutex::new(Vec::<i64>::new()));
    let workers: Vec<_> = buyers
        .iter()
        .zip(&users[1..])
        .enumerate()
        .map(|(i, (token, user))| {
            let (token, user, http) = (token.clone(), *user, http.clone());
            let (base, stop, acked_orders, coupon_winners) = (
                base.clone(),
                stop.clone(),
                acked_orders.clone(),
                coupon_winners.clone(),
            );
            tokio::spawn(async move {
                let mut n = 0;
                let mut coupon_done = false;
                let mut last_round = false;
                loop {
                    // after the stop, one more attempt with the same key settles a request the
                    // kill cut off (replayed if it committed)
                    if stop.load(Ordering::Relaxed) {
                        last_round = true;
                    }
                    let addr = *base.lock().unwrap();
                    let res = http
                        .post(format!("http://{addr}/api/v1/orders"))
                        .bearer_auth(&token)
                        .header("idempotency-key", format!("o-{i}-{n}"))
                        .json(&json!({"items": [{"goods_id": goods, "quantity": 1}]}))
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
                            let mut acked = acked_orders.lock().unwrap();
                            if !acked.contains(&id) {
                                acked.push(id);
                            }
                            n += 1;
                        }
                        // no answer or 503: retry the same key; any other answer is final
                        Ok(r)
                            if r.status() != StatusCode::SERVICE_UNAVAILABLE
                                && r.status() != StatusCode::CONFLICT =>
                        {
                            n += 1
                        }
                        _ => {}
                    }
                    if !coupon_done
                        && let Ok(r) = http
                            .post(format!(
                                "http://{addr}/api/v1/coupon-campaigns/{drop_id}/issue"
                            ))
                            .bearer_auth(&token)
                            .json(&json!({}))
                            .send()
                            .await
                        && r.status() != StatusCode::SERVICE_UNAVAILABLE
                    {
                        coupon_done = true;
                        if r.status() == StatusCode::CREATED {
                            coupon_winners.lock().unwrap().push(user);
                        }
                    }
                    if last_round {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill9();
    let killed_with = acked_orders.lock().unwrap().len();
    child.restart().await;
    *base.lock().unwrap() = child.addr;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    let acked = acked_orders.lock().unwrap().clone();
    assert!(killed_with > 0, "orders were acknowledged before the kill");
    support::assert_orders_persisted(&pool, &acked).await;
    support::assert_stock_and_ledgers(&pool, goods, initial).await;
    let winners = coupon_winners.lock().unwrap().clone();
    support::assert_coupons_persisted(&pool, drop_id, &winners, 25, Duration::from_secs(45)).await;
    // everything Redis granted, including grants whose 201 the kill cut off, reaches the table
    // and leaves the stream
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let c = client.get_multiplexed_async_connection().await.unwrap();
    eventually(
        Duration::from_secs(45),
        "pending stream entries drained",
        || {
            let (pool, mut c) = (pool.clone(), c.clone());
            let (stream, holders) = (
                format!("{prefix}{{cp:{drop_id}}}:stream"),
                format!("{prefix}{{cp:{drop_id}}}:holders"),
            );
            async move {
                let pending: i64 = redis::cmd("XLEN")
                    .arg(&stream)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let granted: i64 = redis::cmd("SCARD")
                    .arg(&holders)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                let rows: i64 =
                    sqlx::query_scalar("select count(*) from coupons where campaign_id = $1")
                        .bind(drop_id)
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                pending == 0 && rows == granted
            }
        },
    )
    .await;
}
