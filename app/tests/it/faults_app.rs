//! The real `floodgate-app serve` binary SIGKILLed mid flash sale and restarted (issue 5):
//! nothing acknowledged is lost. docs/resilience.md maps each guarantee to its test.

use crate::faults;
use crate::faults::procs;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use faults::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

/// The app binary SIGKILLed mid flash sale and restarted: every 201 order is in the
/// database, stock and wallet ledgers are consistent, every coupon answered 201 is persisted,
/// and the coupon grants the dead process left pending (accepted by Redis, never written) are
/// released by the reconciler, so Redis's count equals the persisted coupons again.
#[sqlx::test(migrator = "MIGRATOR")]
async fn app_killed_mid_flash_sale_and_restarted(pool: PgPool) {
    use floodgate_app::auth::{Role, UserId};
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("fgt:{}:", uuid::Uuid::new_v4().simple());
    let redis_url = faults::redis_url();
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
    faults::assert_orders_persisted(&pool, &acked).await;
    faults::assert_stock_and_ledgers(&pool, goods, initial).await;
    let winners = coupon_winners.lock().unwrap().clone();
    faults::assert_coupons_persisted(&pool, drop_id, &winners, 25, Duration::from_secs(45)).await;
    // grants the kill cut off (accepted by Redis, never written) are released by the
    // reconciler once stale, so Redis's holders equal the persisted coupons again
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let c = client.get_multiplexed_async_connection().await.unwrap();
    eventually(
        Duration::from_secs(floodgate_app::coupons::reconciler::STALE.as_secs() + 20),
        "pending coupon grants settled",
        || {
            let (pool, mut c) = (pool.clone(), c.clone());
            let (pending, holders) = (
                format!("{prefix}{{cp:{drop_id}}}:pending"),
                format!("{prefix}{{cp:{drop_id}}}:holders"),
            );
            async move {
                let pending: i64 = redis::cmd("ZCARD")
                    .arg(&pending)
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
