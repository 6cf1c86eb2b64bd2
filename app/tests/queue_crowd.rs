//! The waiting room end to end: 1,000 users join a queue with `maxActiveUsers: 50`, poll at
//! the server's hint, and each admitted user holds a seat and pays (session ended by the
//! payment). Never above the cap at any moment (an independent monitor samples Redis), all
//! who keep polling admitted, no seat sold twice, wallets equal their ledgers. Then the same
//! with half the line abandoning.
#![allow(clippy::unwrap_used)]

mod common;
mod concerts_support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use common::TestApp;
use concerts_support::{User, admin, assert_money_and_seats_consistent, concert, hold, pay, set_config, users};
use futures::{StreamExt, stream};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATOR: &sqlx::migrate::Migrator = &floodgate_app::platform::db::MIGRATOR;

async fn join(app: &TestApp, user: &User, queue: &str) -> reqwest::Response {
    app.http.post(app.url(&format!("/api/v1/queues/{queue}/tokens"))).bearer_auth(&user.token).send().await.unwrap()
}

async fn me(app: &TestApp, queue: &str, token: &str) -> reqwest::Response {
    app.http.get(app.url(&format!("/api/v1/queues/{queue}/tokens/me"))).header("X-Queue-Token", token).send().await.unwrap()
}

/// Runs `n` users through the queue on `app`: each joins, polls (unless it abandons) until
/// admitted, holds its own seat and pays. Returns how many paid.
async fn run_crowd(app: &TestApp, queue: &str, people: &[User], seats: &[i64], schedule: i64, abandon: impl Fn(usize) -> bool, cap: u64) -> u64 {
    let paid = Arc::new(AtomicU64::new(0));
    let max_seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // an independent monitor: the number of live sessions never exceeds the cap
    let monitor = {
        let (max_seen, done) = (max_seen.clone(), done.clone());
        let redis = app.state.redis.clone();
        let key = app.key(&format!("{{q:{queue}}}:active"));
        tokio::spawn(async move {
            let mut conn = redis.conn();
            while !done.load(Ordering::Relaxed) {
                let now = Utc::now().timestamp_millis();
                let n: u64 = conn.zcount(&key, format!("({now}"), "+inf").await.unwrap();
                max_seen.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let tokens: Vec<String> = stream::iter(people.iter())
        .map(|u| async move {
            let res = join(app, u, queue).await;
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
        })
        .buffered(64)
        .collect()
        .await;
    stream::iter(people.iter().enumerate())
        .for_each_concurrent(None, |(i, u)| {
            let token = tokens[i].clone();
            let paid = paid.clone();
            let abandons = abandon(i);
            async move {
                if abandons {
                    return;
                }
                loop {
                    let res = me(app, queue, &token).await;
                    assert_eq!(res.status(), StatusCode::OK);
                    let place: Value = res.json().await.unwrap();
                    match place["status"].as_str().unwrap() {
                        "ADMITTED" => break,
                        "WAITING" => {
                            // exactly as a client honouring the hint would
                            let hint = place["poll_after_seconds"].as_u64().unwrap();
                            assert!(hint >= 1);
                            tokio::time::sleep(Duration::from_secs(hint)).await;
                        }
                        other => panic!("a polling user lost the place: {other}"),
                    }
                }
                let res = hold(app, u, schedule, seats[i], Some(&token)).await;
                assert_eq!(res.status(), StatusCode::CREATED, "hold of user {i}");
                let r: Value = res.json().await.unwrap();
                let res = pay(app, u, r["id"].as_i64().unwrap(), &format!("pay-{i}"), Some(&token)).await;
                assert_eq!(res.status(), StatusCode::CREATED, "payment of user {i}");
                // the session ended with the payment
                let after: Value = me(app, queue, &token).await.json().await.unwrap();
                assert_eq!(after["status"], "EXPIRED");
                paid.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    done.store(true, Ordering::Relaxed);
    monitor.await.unwrap();
    let max = max_seen.load(Ordering::Relaxed);
    assert!(max <= cap, "{max} sessions at once, cap {cap}");
    assert!(max > 0);
    paid.load(Ordering::Relaxed)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_thousand_users_through_a_cap_of_fifty(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    set_config(&app, json!({"queues": {"e2e": {"maxActiveUsers": 50, "admitPerMinute": 60000, "sessionTtl": "30s", "abandonAfter": "10s"}}})).await;
    let admin = admin(&app).await;
    let c = concert(&app, &admin, Some("e2e"), 1000, 1_000).await;
    let people = users(&app, 1000, 5_000).await;
    let started = Instant::now();
    let paid = run_crowd(&app, "e2e", &people, &c.seats, c.schedule, |_| false, 50).await;
    assert_eq!(paid, 1000, "everyone who kept polling was admitted and paid");
    eprintln!("1000 users through cap 50 in {:?}", started.elapsed());
    let sold: i64 = sqlx::query_scalar("select count(*) from seats where schedule_id = $1 and sold_to is not null")
        .bind(c.schedule)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(sold, 1000);
    let balances: i64 = sqlx::query_scalar("select count(*) from wallets where balance = 4000").fetch_one(&app.state.db).await.unwrap();
    assert_eq!(balances, 1000);
    assert_money_and_seats_consistent(&app).await;
    let q: Value = app.get("/api/v1/queues/e2e", None).await.json().await.unwrap();
    assert_eq!(q["waiting"], 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn half_the_line_abandons_and_does_not_stall_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cfg = |paused: bool| {
        json!({"queues": {"half": {"maxActiveUsers": 50, "admitPerMinute": 60000, "sessionTtl": "30s", "abandonAfter": "3s", "paused": paused}}})
    };
    // everyone joins while paused; the abandoners go quiet for longer than abandonAfter
    set_config(&app, cfg(true)).await;
    let admin = admin(&app).await;
    let c = concert(&app, &admin, Some("half"), 1000, 1_000).await;
    let people = users(&app, 1000, 5_000).await;
    let unpause = {
        let app_state = app.state.clone();
        let key = app.key("config");
        let changed = app.key("config:changed");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(4_500)).await;
            let version = app_state.runtime.get().version + 1;
            let mut doc = cfg(false);
            doc["version"] = json!(version);
            let mut conn = app_state.redis.conn();
            let _: () = conn.set(key, doc.to_string()).await.unwrap();
            let _: () = conn.publish(changed, version).await.unwrap();
        })
    };
    let started = Instant::now();
    let paid = run_crowd(&app, "half", &people, &c.seats, c.schedule, |i| i % 2 == 1, 50).await;
    unpause.await.unwrap();
    assert_eq!(paid, 500, "every polling user was admitted and paid");
    eprintln!("500 of 1000 (half abandoned) through cap 50 in {:?}", started.elapsed());
    let mut conn = app.state.redis.conn();
    let abandoned: Option<u64> = conn.hget(app.key("{q:half}:stats"), "abandoned").await.unwrap();
    let admitted: Option<u64> = conn.hget(app.key("{q:half}:stats"), "admitted").await.unwrap();
    assert_eq!(admitted, Some(500), "no abandoned place took a session slot");
    assert_eq!(abandoned, Some(500));
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(metrics.contains("floodgate_queue_abandoned_total{queue=\"half\"} 500"), "{metrics}");
    assert_money_and_seats_consistent(&app).await;
}
