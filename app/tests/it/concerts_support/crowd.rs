//! The crowd runner shared by the end-to-end waiting-room tests.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use futures::{StreamExt, stream};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::Value;

use super::{User, hold, pay, try_join};
use crate::common::TestApp;

async fn try_me(app: &TestApp, queue: &str, token: &str) -> reqwest::Result<reqwest::Response> {
    app.http
        .get(app.url(&format!("/api/v1/queues/{queue}/tokens/me")))
        .header("X-Queue-Token", token)
        .send()
        .await
}

/// Replicas sharing one database and one Redis (prefix), as behind a load balancer: each
/// request goes to the next live one, and a stopped replica gets no more requests.
pub struct Fleet<'a> {
    apps: Vec<&'a TestApp>,
    alive: Vec<AtomicBool>,
    next: AtomicUsize,
}

impl<'a> Fleet<'a> {
    pub fn new(apps: Vec<&'a TestApp>) -> Self {
        let alive = apps.iter().map(|_| AtomicBool::new(true)).collect();
        Self {
            apps,
            alive,
            next: AtomicUsize::new(0),
        }
    }

    /// The next live replica, round robin.
    pub fn pick(&self) -> &'a TestApp {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % self.apps.len();
            if self.alive[i].load(Ordering::Relaxed) {
                return self.apps[i];
            }
        }
    }

    /// Takes replica `i` out of rotation and stops it (its server drains and exits, its
    /// background loops stop and give their leases up).
    pub fn stop(&self, i: usize) {
        self.alive[i].store(false, Ordering::Relaxed);
        self.apps[i].shutdown();
    }

    /// Sends with retries on the next replicas while the chosen one does not answer (a
    /// stopped replica refuses connections, as a load balancer's retry would see it).
    async fn send<F, Fut>(&self, what: &str, call: F) -> reqwest::Response
    where
        F: Fn(&'a TestApp) -> Fut,
        Fut: Future<Output = reqwest::Result<reqwest::Response>>,
    {
        for _ in 0..20 {
            match call(self.pick()).await {
                Ok(res) => return res,
                Err(e) => {
                    eprintln!("{what}: {e}; retrying on another replica");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        panic!("{what}: no replica answered")
    }
}

/// One admitted user: the place the join gave and the session expiry the first admitted
/// poll showed (unix s): with places admitted in order, expiries never decrease with places.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    pub position: u64,
    pub session_expires_at: i64,
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
    let fleet = Fleet::new(vec![app]);
    let run = Crowd {
        queue,
        people,
        seats,
        schedule,
        cap,
    };
    run.across(&fleet, abandon, |_| {}).await.len() as u64
}

/// A crowd through one queue: `people[i]` holds `seats[i]` of `schedule` once admitted.
pub struct Crowd<'p> {
    pub queue: &'p str,
    pub people: &'p [User],
    pub seats: &'p [i64],
    pub schedule: i64,
    /// maxActiveUsers: the monitor (every 10 ms) must never see more live sessions.
    pub cap: u64,
}

impl Crowd<'_> {
    /// Joins everyone (through the fleet), then each user not abandoning polls at the
    /// server's hint until admitted, holds its seat and pays. `midway` is called once, with
    /// the fleet, when half have paid. Returns the admissions of those who paid.
    pub async fn across(
        &self,
        fleet: &Fleet<'_>,
        abandon: impl Fn(usize) -> bool,
        midway: impl Fn(&Fleet<'_>),
    ) -> Vec<Admission> {
        let Crowd {
            queue,
            people,
            seats,
            schedule,
            cap,
        } = *self;
        let paid = Arc::new(AtomicU64::new(0));
        let admissions = Arc::new(Mutex::new(Vec::new()));
        let max_seen = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        // an independent monitor: the number of live sessions never exceeds the cap
        let monitor = {
            let (max_seen, done) = (max_seen.clone(), done.clone());
            let redis = fleet.apps[0].state.redis.clone();
            let key = fleet.apps[0].key(&format!("{{q:{queue}}}:active"));
            tokio::spawn(async move {
                let mut conn = redis.raw_conn();
                while !done.load(Ordering::Relaxed) {
                    let now = Utc::now().timestamp_millis();
                    let n: u64 = conn.zcount(&key, format!("({now}"), "+inf").await.unwrap();
                    max_seen.fetch_max(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let joined: Vec<(String, u64)> = stream::iter(people.iter())
            .map(|u| async move {
                let res = fleet.send("join", |app| try_join(app, u, queue)).await;
                assert_eq!(res.status(), StatusCode::CREATED);
                let body = res.json::<Value>().await.unwrap();
                let position = body["position"].as_u64().unwrap_or(0);
                (body["token"].as_str().unwrap().to_owned(), position)
            })
            .buffered(64)
            .collect()
            .await;
        let half = (0..people.len()).filter(|&i| !abandon(i)).count() as u64 / 2;
        let midway_done = AtomicBool::new(false);
        stream::iter(people.iter().enumerate())
            .for_each_concurrent(None, |(i, u)| {
                let (token, position) = joined[i].clone();
                let (paid, admissions) = (paid.clone(), admissions.clone());
                let abandons = abandon(i);
                let (midway, midway_done) = (&midway, &midway_done);
                async move {
                    if abandons {
                        return;
                    }
                    let session_expires_at = loop {
                        let res = fleet.send("poll", |app| try_me(app, queue, &token)).await;
                        assert_eq!(res.status(), StatusCode::OK);
                        let place: Value = res.json().await.unwrap();
                        match place["status"].as_str().unwrap() {
                            "ADMITTED" => break place["session_expires_at"].as_i64().unwrap(),
                            "WAITING" => {
                                // exactly as a client honouring the hint would
                                let hint = place["poll_after_seconds"].as_u64().unwrap();
                                assert!(hint >= 1);
                                tokio::time::sleep(Duration::from_secs(hint)).await;
                            }
                            other => panic!("a polling user lost the place: {other}"),
                        }
                    };
                    let res = hold(fleet.pick(), u, schedule, seats[i], Some(&token)).await;
                    let status = res.status();
                    if status != StatusCode::CREATED {
                        panic!("hold of user {i}: {status} {}", res.text().await.unwrap());
                    }
                    let r: Value = res.json().await.unwrap();
                    let reservation = r["id"].as_i64().unwrap();
                    let key = format!("pay-{i}");
                    let res = pay(fleet.pick(), u, reservation, &key, Some(&token)).await;
                    assert_eq!(res.status(), StatusCode::CREATED, "payment of user {i}");
                    // the session ended with the payment
                    let after = fleet.send("poll", |app| try_me(app, queue, &token)).await;
                    let after: Value = after.json().await.unwrap();
                    assert_eq!(after["status"], "EXPIRED");
                    admissions.lock().unwrap().push(Admission {
                        position,
                        session_expires_at,
                    });
                    if paid.fetch_add(1, Ordering::Relaxed) + 1 == half
                        && !midway_done.swap(true, Ordering::Relaxed)
                    {
                        midway(fleet);
                    }
                }
            })
            .await;
        done.store(true, Ordering::Relaxed);
        monitor.await.unwrap();
        let max = max_seen.load(Ordering::Relaxed);
        assert!(max <= cap, "{max} sessions at once, cap {cap}");
        assert!(max > 0);
        admissions.lock().unwrap().clone()
    }
}
