//! A waiting-room crowd for tests across replica processes (app/tests/it/replicas_queue.rs):
//! the queue published in the runtime config the way the operator does it, a concert behind
//! it, the admission lease read from Redis, and one user's way through nginx (poll at the
//! server's hint, hold, pay) retrying what a killed replica cut off.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{replicas::Replicas, shop::post};

pub const QUEUE: &str = "crowd";
pub const CAP: u64 = 40;
/// The longest one user may take from its first poll to its payment.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// Longer than the Idempotency-Key claim of a payment the kill cut off (`idempotency::LEASE`,
/// 30 s): its retries answer 409 in flight until the claim lapses, and the session must
/// outlive that wait (with `sessionTtl: 30s` such a user got 403 queue-pass-not-admitted).
pub const SESSION_TTL: &str = "60s";

/// What one user of the crowd saw: its place in line, the session expiry (unix s) of its first
/// admitted poll, and the non-final answers it retried.
#[derive(Debug)]
pub struct Admission {
    pub position: u64,
    pub session_expires_at: i64,
    pub retried: usize,
    /// how long its payment answered 409 in flight (a claim the killed replica left)
    pub in_flight: Option<Duration>,
}

/// Publishes the runtime config the way the operator does, then waits until every replica
/// (asked directly, not through nginx) applies it.
pub async fn configure(set: &Replicas, redis: &mut redis::aio::MultiplexedConnection, admin: &str) {
    let doc = json!({"version": 1, "queues": {QUEUE: {"maxActiveUsers": CAP,
        "admitPerMinute": 60000, "sessionTtl": SESSION_TTL, "abandonAfter": "10s"}}});
    let _: () = redis
        .set(format!("{}config", set.prefix), doc.to_string())
        .await
        .unwrap();
    let _: () = redis
        .publish(format!("{}config:changed", set.prefix), 1)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for r in &set.replicas {
        let started = Instant::now();
        loop {
            let res = http
                .get(r.url("/api/v1/admin/runtime-config"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            if res.json::<Value>().await.unwrap()["version"] == 1 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "replica {} runs no config",
                r.index
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A concert of `n` seats behind the queue, made through nginx; returns (schedule, seat ids).
pub async fn concert(set: &Replicas, pool: &PgPool, admin: &str, n: usize) -> (i64, Vec<i64>) {
    let seats: Vec<Value> = (0..n)
        .map(|i| json!({"section": "A", "row": format!("{}", i / 50 + 1), "number": i % 50 + 1, "price": 1_000}))
        .collect();
    let body = json!({"title": "Replicas", "venue": "Hall", "queue_id": QUEUE,
        "schedules": [{"starts_at": "2026-12-24T19:00:00Z", "seats": seats}]});
    let http = reqwest::Client::new();
    let (status, c) = post(&http, &set.url("/api/v1/concerts"), admin, body, None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let schedule = c["schedules"][0]["id"].as_i64().unwrap();
    let seats =
        sqlx::query_scalar("select seat_id from seats where schedule_id = $1 order by seat_id")
            .bind(schedule)
            .fetch_all(pool)
            .await
            .unwrap();
    (schedule, seats)
}

/// The replica index of the lease holder (`replica-<i>:<uuid>`), if any replica holds it.
pub async fn lease_holder(
    redis: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Option<String> {
    redis
        .get::<_, Option<String>>(format!("{prefix}{{q:{QUEUE}}}:lease"))
        .await
        .unwrap()
}

pub fn replica_of(holder: &str) -> usize {
    holder
        .strip_prefix("replica-")
        .and_then(|h| h.split(':').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("lease holder {holder}"))
}

/// A user's retries of answers a killed replica cut off; past [`PATIENCE`] it gives up.
struct Retries {
    user: i64,
    started: Instant,
    count: usize,
}

impl Retries {
    async fn again(&mut self, what: String) {
        self.count += 1;
        assert!(
            self.started.elapsed() < PATIENCE,
            "user {}: {what}",
            self.user
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One user through nginx: polls at the server's hint until admitted, holds its seat and pays
/// (the payment ends the session). A request the kill cut off (no answer, 502, 503, or a
/// 409 for a payment still in flight) is retried.
pub async fn one_user(
    http: reqwest::Client,
    base: String,
    pool: PgPool,
    (user, bearer): (i64, String),
    (token, position): (String, u64),
    (schedule, seat): (i64, i64),
) -> Admission {
    let mut r = Retries {
        user,
        started: Instant::now(),
        count: 0,
    };
    let me = format!("{base}/api/v1/queues/{QUEUE}/tokens/me");
    let session_expires_at = loop {
        match http.get(&me).header("X-Queue-Token", &token).send().await {
            Ok(res) if res.status() == StatusCode::OK => {
                let place: Value = res.json().await.unwrap();
                match place["status"].as_str().unwrap() {
                    "ADMITTED" => break place["session_expires_at"].as_i64().unwrap(),
                    "WAITING" => {
                        assert!(r.started.elapsed() < PATIENCE, "user {user} waits: {place}");
                        let hint = place["poll_after_seconds"].as_u64().unwrap();
                        tokio::time::sleep(Duration::from_secs(hint.max(1))).await;
                    }
                    other => panic!("user {user} (place {position}) lost the place: {other}"),
                }
            }
            other => r.again(format!("poll: {other:?}")).await,
        }
    };
    let pass =
        |req: reqwest::RequestBuilder| req.bearer_auth(&bearer).header("X-Queue-Token", &token);
    let reservation = hold(&http, &base, &pool, &mut r, pass, (schedule, seat)).await;
    let in_flight = pay(&http, &base, &mut r, pass, reservation).await;
    let after: Value = http
        .get(&me)
        .header("X-Queue-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["status"], "EXPIRED",
        "user {user}: the payment ends the session"
    );
    Admission {
        position,
        session_expires_at,
        retried: r.count,
        in_flight,
    }
}

/// Holds the seat; returns the reservation. A hold whose answer was lost is found in
/// PostgreSQL (the API lists no reservations) when its retry says the seat is taken.
async fn hold(
    http: &reqwest::Client,
    base: &str,
    pool: &PgPool,
    r: &mut Retries,
    pass: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    (schedule, seat): (i64, i64),
) -> i64 {
    let body = json!({"schedule_id": schedule, "seat_id": seat});
    let mut lost_answer = false;
    loop {
        let res = pass(http.post(format!("{base}/api/v1/reservations")))
            .json(&body)
            .send()
            .await;
        match res {
            Ok(res) if res.status() == StatusCode::CREATED => {
                return res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
            }
            Ok(res) if res.status() == StatusCode::CONFLICT && lost_answer => {
                let id: Option<i64> = sqlx::query_scalar(
                    "select hold_reservation_id from seats where seat_id = $1 and held_by = $2",
                )
                .bind(seat)
                .bind(r.user)
                .fetch_one(pool)
                .await
                .unwrap();
                return id.unwrap_or_else(|| panic!("user {}: seat {seat} taken", r.user));
            }
            Ok(res) if !cut_off(res.status()) => {
                panic!(
                    "hold of user {}: {} {}",
                    r.user,
                    res.status(),
                    res.text().await.unwrap()
                )
            }
            other => {
                lost_answer = true;
                r.again(format!("hold: {other:?}")).await;
            }
        }
    }
}

/// 502 or 503: nginx found no replica to answer (or the one it chose was cut off).
fn cut_off(status: StatusCode) -> bool {
    [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE].contains(&status)
}

/// Pays the reservation under one Idempotency-Key; returns how long the payment answered 409
/// in flight (a claim the killed replica left), if it did.
async fn pay(
    http: &reqwest::Client,
    base: &str,
    r: &mut Retries,
    pass: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    reservation: i64,
) -> Option<Duration> {
    let url = format!("{base}/api/v1/reservations/{reservation}/payment");
    let mut in_flight_since = None;
    loop {
        let res = pass(http.post(&url))
            .header("Idempotency-Key", format!("pay-{}", r.user))
            .send()
            .await;
        match res {
            Ok(res) if res.status() == StatusCode::CREATED => {
                return in_flight_since.map(|t: Instant| t.elapsed());
            }
            Ok(res) if res.status() == StatusCode::CONFLICT => {
                let body = res.text().await.unwrap();
                assert!(
                    body.contains("idempotency-key-in-flight"),
                    "payment of user {}: {body}",
                    r.user
                );
                in_flight_since.get_or_insert_with(Instant::now);
                r.again(format!("pay: 409 {body}")).await;
            }
            Ok(res) if !cut_off(res.status()) => {
                panic!(
                    "payment of user {}: {} {}",
                    r.user,
                    res.status(),
                    res.text().await.unwrap()
                )
            }
            other => r.again(format!("pay: {other:?}")).await,
        }
    }
}
