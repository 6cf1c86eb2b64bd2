//! Shared pieces of the fault tests: requests, a looping buyer load, writing the runtime
//! config, reading breaker metrics, and the invariants checked after every fault; with the
//! processes (`procs`), TCP proxies (`proxy`) and private PostgreSQL server they break.

pub mod postgres_server;
pub mod procs;
pub mod proxy;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::common::TestApp;

/// Small breaker settings for tests (the defaults need 50 calls and wait 30 s).
pub fn breaker(
    window: u32,
    minimum: u32,
    wait_in_open: &str,
    permitted: u32,
    slow: &str,
    state: &str,
) -> Value {
    json!({
        "failureRateThreshold": 50.0, "slowCallRateThreshold": 100.0, "slowCallDuration": slow,
        "slidingWindow": {"type": "count", "size": window}, "minimumCalls": minimum,
        "waitInOpen": wait_in_open, "permittedInHalfOpen": permitted, "state": state,
    })
}

/// Writes runtime config `version` with these breakers and announces it, as the operator does.
pub async fn set_breakers(
    redis_url: &str,
    prefix: &str,
    version: u64,
    postgres: Value,
    redis_settings: Value,
) {
    let doc = json!({"version": version, "circuitBreakers": {"postgres": postgres, "redis": redis_settings}});
    let client = redis::Client::open(redis_url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}config"))
        .arg(doc.to_string())
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{prefix}config:changed"))
        .arg(version)
        .query_async(&mut c)
        .await
        .unwrap();
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| floodgate_app::config::DEFAULT_REDIS_URL.into())
}

/// Polls `probe` every 50 ms until it returns true; panics after `limit`. Returns the time taken.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if probe().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of one sample line of `/metrics` (0 if absent).
pub fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Every order answered 201 is in the database and paid.
pub async fn assert_orders_persisted(pool: &PgPool, acknowledged: &[i64]) {
    let found: i64 = sqlx::query_scalar(
        "select count(*) from orders where order_id = any($1) and status = 'paid'",
    )
    .bind(acknowledged)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        found as usize,
        acknowledged.len(),
        "an order answered 201 is missing from the database"
    );
}

/// Stock never negative and stock + sold = initial; every wallet equals its ledger. Returns
/// the units sold.
pub async fn assert_stock_and_ledgers(pool: &PgPool, goods: i64, initial: i64) -> i64 {
    let (stock, sold): (i32, Option<i64>) = sqlx::query_as(
        "select g.stock, (select sum(l.quantity) from order_lines l join orders o using (order_id)
                            where l.goods_id = g.goods_id and o.status = 'paid')
           from goods g where g.goods_id = $1",
    )
    .bind(goods)
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(stock >= 0, "stock went negative: {stock}");
    let sold = sold.unwrap_or(0);
    assert_eq!(
        i64::from(stock) + sold,
        initial,
        "stock + sold differs from the initial stock"
    );
    crate::common::assert_wallets_match_ledgers(pool).await;
    sold
}

/// Waits until every user answered 201 holds a persisted coupon; returns the persisted count.
pub async fn assert_coupons_persisted(
    pool: &PgPool,
    campaign: i64,
    winners: &[i64],
    cap: i64,
    limit: Duration,
) -> i64 {
    eventually(limit, "every acknowledged coupon persisted", || async {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from coupons where campaign_id = $1 and user_id = any($2)",
        )
        .bind(campaign)
        .bind(winners)
        .fetch_one(pool)
        .await
        .unwrap();
        n as usize == winners.len()
    })
    .await;
    let total: i64 = sqlx::query_scalar("select count(*) from coupons where campaign_id = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(total <= cap, "{total} coupons persisted for a cap of {cap}");
    total
}

pub async fn campaign(app: &TestApp, admin: &str, total: i64) -> i64 {
    let now = chrono::Utc::now();
    let body = json!({"name": "drop", "discount_amount": 10, "total_quantity": total,
        "starts_at": now - chrono::Duration::seconds(1), "ends_at": now + chrono::Duration::hours(1)});
    let res = app
        .post_json("/api/v1/coupon-campaigns", &body, Some(admin))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

pub async fn problem_kind(res: reqwest::Response) -> (StatusCode, Option<String>, String) {
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

pub async fn order_once(app: &TestApp, token: &str, goods: i64, key: &str) -> reqwest::Response {
    app.order_keyed(
        token,
        json!([{"goods_id": goods, "quantity": 1}]),
        Some(key),
    )
    .await
}

/// A pool for the app that reaches this test's database through `proxy`.
pub fn proxied_pool(pool: &PgPool, proxy: &proxy::Proxy, size: u32, acquire: Duration) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire)
        .connect_lazy(&procs::database_url(pool, Some(proxy.addr)))
        .unwrap()
}

/// Buyers ordering one unit at a time in a loop (each order with its own Idempotency-Key),
/// recording every answer and the ids of the orders answered 201.
pub struct Buyers {
    stop: Arc<AtomicBool>,
    pub acked: Arc<Mutex<Vec<i64>>>,
    pub answers: Arc<Mutex<Vec<(Instant, Duration, StatusCode)>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Buyers {
    pub fn start(app: &Arc<TestApp>, tokens: &[String], goods: i64) -> Self {
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
    pub async fn stop(self) -> (Vec<(Instant, Duration, StatusCode)>, Vec<i64>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let answers = self.answers.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().clone();
        (answers, acked)
    }
}

/// A coupon drop under load: `workers` clients issue coupons of `campaign` round-robin over
/// `tokens` (one attempt each `pause`) until stopped, recording (user index, status).
pub struct CouponDrop {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(usize, StatusCode)>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl CouponDrop {
    pub fn start(
        app: &Arc<TestApp>,
        tokens: &Arc<Vec<String>>,
        campaign: i64,
        workers: usize,
        pause: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|w| {
                let (app, tokens, stop, answers) =
                    (app.clone(), tokens.clone(), stop.clone(), answers.clone());
                tokio::spawn(async move {
                    let path = format!("/api/v1/coupon-campaigns/{campaign}/issue");
                    let mut u = w;
                    while !stop.load(Ordering::Relaxed) {
                        let user = u % tokens.len();
                        let status = app
                            .post_json(&path, &json!({}), Some(&tokens[user]))
                            .await
                            .status();
                        answers.lock().unwrap().push((user, status));
                        u += workers;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            answers,
            workers,
        }
    }

    /// 201s answered so far.
    pub fn granted(&self) -> i64 {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .filter(|(_, s)| *s == StatusCode::CREATED)
            .count() as i64
    }

    /// Stops the drop; returns every answer.
    pub async fn stop(self) -> Vec<(usize, StatusCode)> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        self.answers.lock().unwrap().clone()
    }
}
