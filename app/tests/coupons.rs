//! First-come-first-served coupons: 5,000 concurrent attempts from 2,000 users for 300
//! coupons leave exactly 300 persisted rows and nobody twice — also when Redis is flushed in
//! the middle of the drop; window and duplicate answers; read-your-writes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

const MIGRATOR: &sqlx::migrate::Migrator = &floodgate_app::platform::db::MIGRATOR;

async fn campaign(app: &TestApp, admin: &str, total: i64, starts_in: chrono::Duration) -> i64 {
    let now = chrono::Utc::now();
    let body = json!({"name": "drop", "discount_amount": 1000, "total_quantity": total,
        "starts_at": now + starts_in, "ends_at": now + chrono::Duration::hours(1)});
    let res = app
        .post_json("/api/v1/coupon-campaigns", &body, Some(admin))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

async fn wait_persisted(pool: &PgPool, campaign: i64, want: i64) {
    let started = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar("select count(*) from coupons where campaign_id = $1")
            .bind(campaign)
            .fetch_one(pool)
            .await
            .unwrap();
        if n >= want || started.elapsed() > Duration::from_secs(20) {
            assert_eq!(n, want, "persisted coupons");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drop_attempts(
    app: &TestApp,
    tokens: &[String],
    campaign: i64,
    attempts: usize,
) -> Vec<(usize, StatusCode)> {
    let path = format!("/api/v1/coupon-campaigns/{campaign}/issue");
    let sem = tokio::sync::Semaphore::new(500);
    futures::future::join_all((0..attempts).map(|i| {
        let (path, sem) = (&path, &sem);
        async move {
            let _permit = sem.acquire().await.unwrap();
            let u = i % tokens.len();
            (
                u,
                app.post_json(path, &json!({}), Some(&tokens[u]))
                    .await
                    .status(),
            )
        }
    }))
    .await
}

fn check_answers(results: &[(usize, StatusCode)]) -> std::collections::HashSet<usize> {
    let mut winners = std::collections::HashSet::new();
    for (u, s) in results {
        match *s {
            StatusCode::CREATED => assert!(winners.insert(*u), "user {u} got two 201s"),
            StatusCode::CONFLICT | StatusCode::GONE | StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("unexpected {other}"),
        }
    }
    winners
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn five_thousand_attempts_three_hundred_coupons(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 20).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let id = campaign(&app, &admin, 300, chrono::Duration::seconds(-1)).await;
    let tokens = app.bulk_customers(2_000, "u").await;
    let results = drop_attempts(&app, &tokens, id, 5_000).await;
    let winners = check_answers(&results);
    assert_eq!(winners.len(), 300);
    assert_eq!(
        results
            .iter()
            .filter(|(_, s)| *s == StatusCode::SERVICE_UNAVAILABLE)
            .count(),
        0
    );
    wait_persisted(&pool, id, 300).await;
    let dupes: i64 = sqlx::query_scalar("select count(*) from (select user_id from coupons where campaign_id = $1 group by user_id having count(*) > 1) d")
        .bind(id).fetch_one(&pool).await.unwrap();
    assert_eq!(dupes, 0);
    let persisted_users: Vec<i64> =
        sqlx::query_scalar("select user_id from coupons where campaign_id = $1")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(persisted_users.len(), winners.len());
    let view: Value = app
        .get(&format!("/api/v1/coupon-campaigns/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["issued"], 300);
    assert_eq!(view["persisted"], 300);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_redis_flush_mid_drop_never_exceeds_the_cap(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 20).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let id = campaign(&app, &admin, 300, chrono::Duration::seconds(-1)).await;
    let tokens = app.bulk_customers(2_000, "u").await;
    let first = drop_attempts(&app, &tokens[..1000], id, 1_500).await;
    let early = check_answers(&first);
    assert!(early.len() <= 300);
    // wipe everything of this test's prefix (FLUSHALL would also wipe other tests' keys)
    let mut conn = app.state.redis.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", app.state.redis.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let second = drop_attempts(&app, &tokens, id, 3_500).await;
    let _ = check_answers(&second);
    // the rebuild comes from PostgreSQL: wait for the consumer to settle
    tokio::time::sleep(Duration::from_secs(2)).await;
    let persisted: i64 = sqlx::query_scalar("select count(*) from coupons where campaign_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(persisted <= 300, "persisted {persisted} > cap");
    let dupes: i64 = sqlx::query_scalar("select count(*) from (select user_id from coupons where campaign_id = $1 group by user_id having count(*) > 1) d")
        .bind(id).fetch_one(&pool).await.unwrap();
    assert_eq!(dupes, 0);
    // with plenty of demand left, the drop still reaches exactly the cap
    let third = drop_attempts(&app, &tokens, id, 2_000).await;
    let _ = check_answers(&third);
    wait_persisted(&pool, id, 300).await;
    let issued: i32 =
        sqlx::query_scalar("select issued from coupon_campaigns where campaign_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(issued, 300);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn window_duplicates_and_read_your_writes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let later = campaign(
        &app,
        &admin,
        10,
        chrono::Duration::hours(1) - chrono::Duration::minutes(1),
    )
    .await;
    let user = app.customer("u@example.com").await;
    let b = expect_problem(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{later}/issue"),
            &json!({}),
            Some(&user),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("not-started"));

    let one = campaign(&app, &admin, 1, chrono::Duration::seconds(-1)).await;
    let path = format!("/api/v1/coupon-campaigns/{one}/issue");
    assert_eq!(
        app.post_json(&path, &json!({}), Some(&user)).await.status(),
        StatusCode::CREATED
    );
    // read-your-writes: visible at once, persisted or not
    let mine: Value = app
        .get("/api/v1/coupons", Some(&user))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        mine.as_array()
            .unwrap()
            .iter()
            .filter(|c| c["campaign_id"] == one)
            .count(),
        1
    );
    let b = expect_problem(
        app.post_json(&path, &json!({}), Some(&user)).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("already-issued"));
    let other = app.customer("o@example.com").await;
    let b = expect_problem(
        app.post_json(&path, &json!({}), Some(&other)).await,
        StatusCode::GONE,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("sold-out"));
    expect_problem(
        app.post_json(
            "/api/v1/coupon-campaigns/999999/issue",
            &json!({}),
            Some(&other),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/coupon-campaigns/abc/issue",
            &json!({}),
            Some(&other),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    // customers cannot create campaigns; bad campaigns are refused precisely
    expect_problem(
        app.post_json("/api/v1/coupon-campaigns", &json!({}), Some(&user))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let now = chrono::Utc::now();
    let base = json!({"name": "x", "total_quantity": 5, "starts_at": now, "ends_at": now + chrono::Duration::hours(1)});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let b = expect_problem(
        app.post_json(
            "/api/v1/coupon-campaigns",
            &with("discount_amount", json!(100)),
            Some(&user),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(b["detail"].as_str().unwrap().contains("admin"));
    for (body, field) in [
        (base.clone(), "discount_amount"),
        (with("discount_percent", json!(150)), "discount_percent"),
        (with("discount_amount", json!(-5)), "discount_amount"),
        (
            {
                let mut b = with("discount_amount", json!(5));
                b["total_quantity"] = json!(0);
                b
            },
            "total_quantity",
        ),
        (
            {
                let mut b = with("discount_amount", json!(5));
                b["ends_at"] = json!(now - chrono::Duration::hours(1));
                b
            },
            "ends_at",
        ),
    ] {
        let b = expect_problem(
            app.post_json("/api/v1/coupon-campaigns", &body, Some(&admin))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(b["field"], field, "{b}");
    }
}
