//! A small shop for tests across processes: users minted straight into the database with
//! tokens the replicas accept, goods and funded wallets made through the API, and the
//! invariants of stock, ledgers and Idempotency-Key claims checked in PostgreSQL, and a steady
//! load of reads and writes that records every failure.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use floodgate_app::auth::{Role, UserId};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| floodgate_app::config::DEFAULT_REDIS_URL.into())
}

/// `n` users inserted straight into the database (argon2 signups would dominate the run),
/// with access tokens signed by the development key of apps using Redis prefix `prefix`;
/// returns (user id, token).
pub async fn users(
    pool: &PgPool,
    prefix: &str,
    n: usize,
    tag: &str,
    roles: &[Role],
) -> Vec<(i64, String)> {
    let mut settings = floodgate_app::config::Settings::defaults();
    settings.redis_prefix = prefix.to_owned();
    // only for signing tokens with the replicas' development key; runs no background loops
    let keys = floodgate_app::server::build_state(settings, pool.clone()).unwrap();
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    let ids: Vec<i64> = sqlx::query_scalar(
        "insert into users (email, password_hash, name, roles)
         select $2 || g || '@example.com', 'not-a-hash', 'bulk', $3 from generate_series(1, $1) g
         returning user_id",
    )
    .bind(n as i32)
    .bind(tag)
    .bind(&names)
    .fetch_all(pool)
    .await
    .unwrap();
    ids.into_iter()
        .map(|id| (id, keys.jwt.issue(UserId(id), roles).unwrap()))
        .collect()
}

pub async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
    key: Option<&str>,
) -> Result<(StatusCode, Value), String> {
    let mut req = http.post(url).bearer_auth(token).json(&body);
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let res = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = res.status();
    let body = res.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Goods with `stock` units at `price`, and every buyer's wallet charged `funds`, through the
/// app at `base` (`http://host:port`).
pub async fn goods_and_wallets(
    base: &str,
    seller: &str,
    buyers: &[(i64, String)],
    price: i64,
    stock: i64,
    funds: i64,
) -> i64 {
    let http = reqwest::Client::new();
    let body = json!({"name": "flash", "price": price, "stock": stock});
    let (status, goods) = post(&http, &format!("{base}/api/v1/goods"), seller, body, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{goods}");
    fund_wallets(base, buyers, funds).await;
    goods["id"].as_i64().unwrap()
}

/// Every buyer's wallet charged `funds` through the app at `base` (`http://host:port`).
pub async fn fund_wallets(base: &str, buyers: &[(i64, String)], funds: i64) {
    let http = reqwest::Client::new();
    let charges = format!("{base}/api/v1/wallet/charges");
    for chunk in buyers.chunks(100) {
        let charged = join_all(
            chunk
                .iter()
                .map(|(_, token)| post(&http, &charges, token, json!({"amount": funds}), None)),
        )
        .await;
        for c in charged {
            assert_eq!(c.as_ref().map(|c| c.0), Ok(StatusCode::CREATED), "{c:?}");
        }
    }
}

/// Stock never negative, stock + sold = initial, every wallet equals its ledger, and no
/// Idempotency-Key claim left unfinished.
pub async fn assert_stock_ledgers_and_claims(pool: &PgPool, goods: i64, initial: i64) -> i64 {
    let sold = crate::faults::assert_stock_and_ledgers(pool, goods, initial).await;
    let open: i64 =
        sqlx::query_scalar("select count(*) from idempotency_keys where status is null")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        open, 0,
        "an Idempotency-Key claim was left without a stored response"
    );
    sold
}

/// Steady load on the app at `base` (`http://host:port`): readers of the goods, buyers ordering one unit (each order
/// under its own Idempotency-Key) and charging their wallet (every other charge without a
/// key). Records every failure (anything but 2xx, or no answer) and the ids of the orders
/// answered 201.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    failures: Arc<Mutex<Vec<String>>>,
    orders: Arc<Mutex<Vec<i64>>>,
    pub answers: Arc<AtomicUsize>,
}

impl Load {
    pub fn start(base: &str, buyers: &[(i64, String)], goods: i64) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(buyers.len())
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let orders: Arc<Mutex<Vec<i64>>> = Arc::default();
        let answers = Arc::new(AtomicUsize::new(0));
        let workers = buyers
            .iter()
            .enumerate()
            .map(|(w, (_, token))| {
                let (http, token) = (http.clone(), token.clone());
                let (stop, failures, orders, answers) = (
                    stop.clone(),
                    failures.clone(),
                    orders.clone(),
                    answers.clone(),
                );
                let (read, order, charge) = (
                    format!("{base}/api/v1/goods/{goods}"),
                    format!("{base}/api/v1/orders"),
                    format!("{base}/api/v1/wallet/charges"),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let fail = |what: String| failures.lock().unwrap().push(what);
                        match http.get(&read).send().await {
                            Ok(r) if r.status() == StatusCode::OK => {}
                            Ok(r) => fail(format!("GET goods: {}", r.status())),
                            Err(e) => fail(format!("GET goods: {e:?}")),
                        }
                        let body = json!({"items": [{"goods_id": goods, "quantity": 1}]});
                        match post(&http, &order, &token, body, Some(&format!("o-{w}-{n}"))).await {
                            Ok((StatusCode::CREATED, b)) => {
                                orders.lock().unwrap().push(b["id"].as_i64().unwrap())
                            }
                            other => fail(format!("POST orders: {other:?}")),
                        }
                        // every other charge without a key: nginx never sends those twice,
                        // so only the replica's drain keeps them from failing
                        let key = (n % 2 == 0).then(|| format!("c-{w}-{n}"));
                        match post(&http, &charge, &token, json!({"amount": 1}), key.as_deref())
                            .await
                        {
                            Ok((StatusCode::CREATED, _)) => {}
                            other => fail(format!("POST charges (key {key:?}): {other:?}")),
                        }
                        answers.fetch_add(3, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            workers,
            failures,
            orders,
            answers,
        }
    }

    pub async fn stop(self) -> (Vec<String>, Vec<i64>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let orders = self.orders.lock().unwrap().clone();
        (failures, orders, self.answers.load(Ordering::Relaxed))
    }
}
