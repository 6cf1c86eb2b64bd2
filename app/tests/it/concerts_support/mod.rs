//! Shared helpers of the ticketing and waiting-room tests: users minted in bulk (straight
//! into the database with wallets funded through the wallet's own ledger code, since argon2
//! signups would dominate the run), concerts built through the admin API, runtime config
//! published the way the operator does it.

use std::time::{Duration, Instant};

use floodgate_app::{
    auth::{Role, UserId},
    platform::money::Money,
    wallet::{LedgerKind, store as wallet},
};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub mod crowd;

use crate::common::TestApp;

pub struct User {
    pub id: UserId,
    pub token: String,
}

/// `n` customers with `balance` in their wallets.
pub async fn users(app: &TestApp, n: usize, balance: i64) -> Vec<User> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let emails: Vec<String> = (0..n).map(|i| format!("u{i}-{tag}@example.com")).collect();
    let ids: Vec<i64> = sqlx::query_scalar(
        "insert into users (email, password_hash, name)
         select e, 'not-a-hash', 'Test' from unnest($1::text[]) as e returning user_id",
    )
    .bind(&emails)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap();
    let mut out = Vec::with_capacity(n);
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    for id in ids {
        let id = UserId(id);
        if balance > 0 {
            wallet::credit(&mut conn, id, Money::new(balance), LedgerKind::Charge, None)
                .await
                .unwrap();
        }
        out.push(User {
            id,
            token: app.state.jwt.issue(id, &[Role::Customer]).unwrap(),
        });
    }
    out
}

pub async fn admin(app: &TestApp) -> String {
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    app.user_with_roles(&email, &["customer", "admin"]).await
}

pub struct Concert {
    pub id: i64,
    pub schedule: i64,
    pub seats: Vec<i64>,
}

/// A concert with one schedule and `seats` seats of `price`, optionally behind `queue`.
pub async fn concert(
    app: &TestApp,
    admin: &str,
    queue: Option<&str>,
    seats: usize,
    price: i64,
) -> Concert {
    let seat_list: Vec<Value> =
        (0..seats).map(|i| json!({"section": "A", "row": format!("{}", i / 50 + 1), "number": i % 50 + 1, "price": price})).collect();
    let body = json!({
        "title": "Test Concert", "venue": "Hall", "queue_id": queue,
        "schedules": [{"starts_at": "2026-12-24T19:00:00Z", "seats": seat_list}],
    });
    let res = app.post_json("/api/v1/concerts", &body, Some(admin)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let c: Value = res.json().await.unwrap();
    let schedule = c["schedules"][0]["id"].as_i64().unwrap();
    let seats: Vec<i64> =
        sqlx::query_scalar("select seat_id from seats where schedule_id = $1 order by seat_id")
            .bind(schedule)
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    Concert {
        id: c["id"].as_i64().unwrap(),
        schedule,
        seats,
    }
}

/// Publishes a runtime config document and waits until this app applies it.
/// `POST /queues/{queue}/tokens` as `user`.
pub async fn join(app: &TestApp, user: &User, queue: &str) -> reqwest::Response {
    try_join(app, user, queue).await.unwrap()
}

pub async fn try_join(
    app: &TestApp,
    user: &User,
    queue: &str,
) -> reqwest::Result<reqwest::Response> {
    app.http
        .post(app.url(&format!("/api/v1/queues/{queue}/tokens")))
        .bearer_auth(&user.token)
        .send()
        .await
}

pub async fn set_config(app: &TestApp, mut doc: Value) {
    let version = app.state.runtime.get().version + 1;
    doc["version"] = json!(version);
    let mut conn = app.state.redis.raw_conn();
    let _: () = conn.set(app.key("config"), doc.to_string()).await.unwrap();
    let _: () = conn
        .publish(app.key("config:changed"), version)
        .await
        .unwrap();
    let started = Instant::now();
    while app.state.runtime.get().version != version {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "runtime config not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn hold(
    app: &TestApp,
    user: &User,
    schedule: i64,
    seat: i64,
    pass: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url("/api/v1/reservations"))
        .bearer_auth(&user.token)
        .json(&json!({"schedule_id": schedule, "seat_id": seat}));
    if let Some(p) = pass {
        req = req.header("X-Queue-Token", p);
    }
    req.send().await.unwrap()
}

pub async fn pay(
    app: &TestApp,
    user: &User,
    reservation: i64,
    key: &str,
    pass: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(&format!("/api/v1/reservations/{reservation}/payment")))
        .bearer_auth(&user.token)
        .header("Idempotency-Key", key);
    if let Some(p) = pass {
        req = req.header("X-Queue-Token", p);
    }
    req.send().await.unwrap()
}

/// Every wallet's balance equals the sum of its ledger, and no seat is sold twice.
pub async fn assert_money_and_seats_consistent(app: &TestApp) {
    let bad: i64 = sqlx::query_scalar(
        "select count(*) from wallets w
          where w.balance <> coalesce((select sum(amount) from wallet_ledger l where l.user_id = w.user_id), 0)",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(bad, 0, "a wallet disagrees with its ledger");
    let double: i64 = sqlx::query_scalar("select count(*) from (select seat_id from reservations where status = 'confirmed' group by seat_id having count(*) > 1) d")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(double, 0, "a seat was sold twice");
    let mismatched: i64 = sqlx::query_scalar(
        "select count(*) from seats s
          where (s.sold_to is not null) <> exists (select 1 from reservations r where r.seat_id = s.seat_id and r.status = 'confirmed')
             or (s.sold_to is not null and not exists (select 1 from seat_payments p where p.reservation_id = s.sold_reservation_id))",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(
        mismatched, 0,
        "seat sale state disagrees with reservations or payments"
    );
    let payments: (i64, i64) = sqlx::query_as(
        "select (select coalesce(sum(amount), 0)::bigint from seat_payments),
                (select coalesce(-sum(amount), 0)::bigint from wallet_ledger where kind = 'seat_payment')",
    )
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(payments.0, payments.1, "payments and ledger debits differ");
}
