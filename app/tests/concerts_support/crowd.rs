//! The crowd runner shared by the end-to-end waiting-room tests.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use futures::{StreamExt, stream};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::Value;

use super::{User, hold, join, pay};
use crate::common::TestApp;

async fn me(app: &TestApp, queue: &str, token: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/api/v1/queues/{queue}/tokens/me")))
        .header("X-Queue-Token", token)
        .send()
        .await
        .unwrap()
}

/// Runs `n` users through the queue on `app`: each joins, polls (unless it abandons) until
/// admitted, holds its own seat and pays. Returns how many paid.
pub async fn run_crowd(
    app: &TestApp,
    queue: &str,
    people: &[User],
    seats: &[i64],
    schedule: i64,
    abandon: impl Fn(usize) -> bool,
    cap: u64,
) -> u64 {
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
            res.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned()
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
                let status = res.status();
                if status != StatusCode::CREATED {
                    panic!("hold of user {i}: {status} {}", res.text().await.unwrap());
                }
                let r: Value = res.json().await.unwrap();
                let res = pay(
                    app,
                    u,
                    r["id"].as_i64().unwrap(),
                    &format!("pay-{i}"),
                    Some(&token),
                )
                .await;
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
