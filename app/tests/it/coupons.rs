//! First-come-first-served coupons: 5,000 concurrent attempts from 2,000 users for 300
//! coupons leave exactly 300 persisted rows and nobody twice — also when Redis is flushed in
//! the middle of the drop; window and duplicate answers; read-your-writes.

use crate::common;

use std::time::{Duration, Instant};

use common::{TestApp, expect_problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

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
    let mut conn = app.state.redis.raw_conn();
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

/// Deletes the Redis keys of one campaign (this test's prefix only), as a Redis loss would.
async fn forget_campaign(app: &TestApp, campaign: i64) {
    let mut conn = app.state.redis.raw_conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}{{cp:{campaign}}}*", app.state.redis.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the campaign was loaded");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// 1,000 callers spraying issue attempts at 200 campaign ids that do not exist while a genuine
/// campaign's Redis keys are gone: the genuine campaign's reload is not queued behind them
/// (it completes within 300 ms), and every fake id answers 404.
#[sqlx::test(migrator = "MIGRATOR")]
async fn unknown_campaign_spray_does_not_stall_a_genuine_reload(pool: PgPool) {
    use floodgate_app::{auth::UserId, coupons::service, platform::ids::CampaignId};
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    };
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let id = campaign(&app, &admin, 100, chrono::Duration::seconds(-1)).await;
    let first = app.customer("first@example.com").await;
    assert_eq!(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{id}/issue"),
            &json!({}),
            Some(&first)
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    wait_persisted(&pool, id, 1).await;
    let users: Vec<i64> = sqlx::query_scalar("select user_id from users order by user_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let (first_id, other_id) = (users[1], users[0]);

    let stop = Arc::new(AtomicBool::new(false));
    let (not_found, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let spray: Vec<_> = (0..1_000i64)
        .map(|w| {
            let (state, stop) = (app.state.clone(), stop.clone());
            let (not_found, other) = (not_found.clone(), other.clone());
            tokio::spawn(async move {
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    let fake = 50_000_000 + n % 200;
                    match service::issue(&state, CampaignId(fake), UserId(1 + n % 1_000)).await {
                        Err(e) if e.status() == StatusCode::NOT_FOUND => &not_found,
                        _ => &other,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    n += 1_000;
                }
            })
        })
        .collect();
    // the spray is in full swing when the genuine campaign's keys are lost
    tokio::time::sleep(Duration::from_millis(500)).await;
    forget_campaign(&app, id).await;
    let started = Instant::now();
    let genuine = service::issue(&app.state, CampaignId(id), UserId(first_id)).await;
    let took = started.elapsed();
    let newcomer = service::issue(&app.state, CampaignId(id), UserId(other_id)).await;
    stop.store(true, Ordering::Relaxed);
    for s in spray {
        s.await.unwrap();
    }
    assert_eq!(
        genuine.unwrap(),
        service::Issue::AlreadyHolds,
        "the reload brought the holder back"
    );
    assert!(
        took < Duration::from_millis(300),
        "the genuine campaign's reload waited {took:?} behind the unknown ids"
    );
    assert_eq!(newcomer.unwrap(), service::Issue::Issued);
    let (not_found, other) = (
        not_found.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    assert!(not_found > 1_000, "{not_found} fake attempts answered 404");
    assert_eq!(other, 0, "fake attempts answered something else than 404");
    // one PostgreSQL lookup per fake id (remembered as unknown for 5 s), not one per attempt
    let lookups = app
        .state
        .metrics
        .coupon_campaign_lookups
        .get_or_create(&floodgate_app::platform::metrics::OutcomeLabels { outcome: "unknown" })
        .get();
    assert!(
        lookups <= 2 * 200,
        "{lookups} lookups of unknown ids for {not_found} attempts at 200 ids"
    );
    // nothing leaks: no reload lock left, the memories bounded
    assert_eq!(app.state.coupon_campaigns.locks_held(), 0);
    let (unknown, _) = app.state.coupon_campaigns.remembered();
    assert!(unknown <= 200);
}

/// After a Redis crash with `appendfsync everysec` the campaign's keys survive but the holders
/// set misses grants PostgreSQL has, so Redis's count is too low. A grant PostgreSQL then
/// refuses is never answered 201: a newcomer gets 410 `sold-out`, a holder Redis forgot gets
/// 409 `already-issued`; the refusal is counted in a metric and Redis's holders are resynced
/// from PostgreSQL, so the next newcomer is refused by Redis alone.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_grant_postgres_refuses_is_never_answered_201(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let id = campaign(&app, &admin, 5, chrono::Duration::seconds(-1)).await;
    let tokens = app.bulk_customers(8, "u").await;
    let ids: Vec<i64> =
        sqlx::query_scalar("select user_id from users where email like 'u%' order by user_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let path = format!("/api/v1/coupon-campaigns/{id}/issue");
    for t in &tokens[..5] {
        assert_eq!(
            app.post_json(&path, &json!({}), Some(t)).await.status(),
            StatusCode::CREATED
        );
    }
    wait_persisted(&pool, id, 5).await;
    // what an everysec crash leaves: the keys survive, the last grants are gone from the set
    let holders = format!("{}{{cp:{id}}}:holders", app.state.redis.prefix());
    let mut conn = app.state.redis.raw_conn();
    let _: () = redis::cmd("SREM")
        .arg(&holders)
        .arg(ids[3])
        .arg(ids[4])
        .query_async(&mut conn)
        .await
        .unwrap();

    let b = expect_problem(
        app.post_json(&path, &json!({}), Some(&tokens[5])).await,
        StatusCode::GONE,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("sold-out"), "{b}");
    // Redis was resynced from PostgreSQL: all five holders are back
    let mut members: Vec<i64> = redis::cmd("SMEMBERS")
        .arg(&holders)
        .query_async(&mut conn)
        .await
        .unwrap();
    members.sort_unstable();
    assert_eq!(members, ids[..5].to_vec(), "redis holders resynced");
    let b = expect_problem(
        app.post_json(&path, &json!({}), Some(&tokens[4])).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        b["type"].as_str().unwrap().ends_with("already-issued"),
        "{b}"
    );
    let b = expect_problem(
        app.post_json(&path, &json!({}), Some(&tokens[6])).await,
        StatusCode::GONE,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("sold-out"), "{b}");
    // a holder Redis forgot while it has room: PostgreSQL answers already-issued, not 201
    let _: () = redis::cmd("SREM")
        .arg(&holders)
        .arg(ids[4])
        .query_async(&mut conn)
        .await
        .unwrap();
    let b = expect_problem(
        app.post_json(&path, &json!({}), Some(&tokens[4])).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        b["type"].as_str().unwrap().ends_with("already-issued"),
        "{b}"
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let refused = |reason: &str| -> f64 {
        let sample = format!("floodgate_coupon_grants_refused_total{{reason=\"{reason}\"}}");
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(sample.as_str())
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0)
    };
    assert_eq!(refused("sold-out"), 1.0, "the refusal is counted");
    assert_eq!(refused("already-issued"), 1.0, "the refusal is counted");
    let mut members: Vec<i64> = redis::cmd("SMEMBERS")
        .arg(&holders)
        .query_async(&mut conn)
        .await
        .unwrap();
    members.sort_unstable();
    assert_eq!(members, ids[..5].to_vec(), "redis holders resynced again");
    let persisted: Vec<i64> =
        sqlx::query_scalar("select user_id from coupons where campaign_id = $1 order by user_id")
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(persisted, ids[..5].to_vec());
}

/// A grant Redis accepted whose writer died (app crash between the script and the commit)
/// holds a place in Redis's count that PostgreSQL never filled: the reconciler releases it
/// once it has been pending far longer than any batch runs, and the place is granted again.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_grant_whose_writer_died_is_released(pool: PgPool) {
    use floodgate_app::{coupons::reconciler, platform::ids::CampaignId};
    let app = TestApp::spawn(pool.clone()).await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let id = campaign(&app, &admin, 2, chrono::Duration::seconds(-1)).await;
    let tokens = app.bulk_customers(3, "u").await;
    // what a crash leaves: a holder in Redis, pending for a minute, no row
    let orphan = 987_654_321_i64;
    let prefix = app.state.redis.prefix().to_owned();
    let mut conn = app.state.redis.raw_conn();
    let _: () = redis::pipe()
        .sadd(format!("{prefix}{{cp:{id}}}:holders"), orphan)
        .zadd(
            format!("{prefix}{{cp:{id}}}:pending"),
            orphan,
            chrono::Utc::now().timestamp_millis() - 60_000,
        )
        .query_async(&mut conn)
        .await
        .unwrap();
    let path = format!("/api/v1/coupon-campaigns/{id}/issue");
    assert_eq!(
        app.post_json(&path, &json!({}), Some(&tokens[0]))
            .await
            .status(),
        StatusCode::CREATED
    );
    expect_problem(
        app.post_json(&path, &json!({}), Some(&tokens[1])).await,
        StatusCode::GONE,
    )
    .await;
    // a fresh pending grant is left alone; the stale one is released
    let released = reconciler::release_stale(&app.state, CampaignId(id), reconciler::STALE)
        .await
        .unwrap();
    assert_eq!(released, 1);
    assert_eq!(
        app.post_json(&path, &json!({}), Some(&tokens[1]))
            .await
            .status(),
        StatusCode::CREATED
    );
    expect_problem(
        app.post_json(&path, &json!({}), Some(&tokens[2])).await,
        StatusCode::GONE,
    )
    .await;
    wait_persisted(&pool, id, 2).await;
    let pending: i64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}{{cp:{id}}}:pending"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending, 0, "settled grants leave the pending set");
}
