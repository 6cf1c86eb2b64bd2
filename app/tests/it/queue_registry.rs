//! Which waiting rooms exist, against real Redis and PostgreSQL (issue 13, item 4): a join
//! names a queue the runtime config publishes or a goods/concert references, anything else
//! is a 404 that leaves nothing behind; a queue nobody joins any more leaves the admission
//! loop; and many queues over a slow network to Redis do not delay another queue's
//! admission beyond the bound of `docs/security.md` ("Waiting rooms exist only when
//! configured").

use crate::common;
use crate::concerts_support;
use crate::faults::proxy;

use std::{
    net::ToSocketAddrs,
    time::{Duration, Instant},
};

use common::{TestApp, expect_problem};
use concerts_support::{admin, concert, join, set_config, users};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

/// Every key under the app's prefix.
async fn keys(app: &TestApp) -> Vec<String> {
    let mut conn = app.state.redis.raw_conn();
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", app.state.redis.prefix()))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.extend(batch);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Every member of every set or sorted set under the app's prefix (where a registry of
/// queues can live, whatever its shape).
async fn set_members(app: &TestApp) -> Vec<String> {
    let mut conn = app.state.redis.raw_conn();
    let mut out = Vec::new();
    for key in keys(app).await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        match kind.as_str() {
            "set" => out.extend(conn.smembers::<_, Vec<String>>(&key).await.unwrap()),
            "zset" => out.extend(conn.zrange::<_, Vec<String>>(&key, 0, -1).await.unwrap()),
            _ => {}
        }
    }
    out
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics", None).await.text().await.unwrap()
}

/// Joins to ids nobody configured or referenced get 404 `queue-not-found` (problem+json) and
/// leave no key, no registry entry and no metric label behind; the queue the runtime config
/// publishes and those a goods and a concert reference are joined as before.
#[sqlx::test(migrator = "MIGRATOR")]
async fn joins_to_unconfigured_queues_get_404_and_register_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    set_config(&app, json!({"queues": {"open-room": {"paused": true}}})).await;
    let seller = app
        .user_with_roles("seller@example.com", &["customer", "seller"])
        .await;
    let res = app
        .post_json(
            "/api/v1/goods",
            &json!({"name": "queued", "price": 10, "stock": 5, "queue_id": "goods-room"}),
            Some(&seller),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let admin = admin(&app).await;
    concert(&app, &admin, Some("concert-room"), 2, 100).await;
    let people = users(&app, 2, 0).await;

    for i in 0..50 {
        let id = format!(
            "rnd-{i}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let res = join(&app, &people[i % 2], &id).await;
        assert_eq!(
            res.status(),
            StatusCode::NOT_FOUND,
            "join to the unconfigured queue {id}"
        );
        let p = expect_problem(res, StatusCode::NOT_FOUND).await;
        assert!(
            p["type"].as_str().unwrap().ends_with("/queue-not-found"),
            "{p}"
        );
    }
    // give the admission loop time to pick up anything that was registered
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let stray: Vec<String> = keys(&app)
        .await
        .into_iter()
        .filter(|k| k.contains("rnd-"))
        .collect();
    assert!(stray.is_empty(), "keys left by refused joins: {stray:?}");
    let registered: Vec<String> = set_members(&app)
        .await
        .into_iter()
        .filter(|m| m.starts_with("rnd-"))
        .collect();
    assert!(
        registered.is_empty(),
        "refused joins registered {} queues",
        registered.len()
    );
    assert!(
        !metrics(&app).await.contains("queue=\"rnd-"),
        "refused joins created metric labels"
    );

    for queue in ["open-room", "goods-room", "concert-room"] {
        let res = join(&app, &people[0], queue).await;
        assert_eq!(res.status(), StatusCode::CREATED, "join to {queue}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["position"], 1, "{queue}: {body}");
    }
}

/// A queue that leaves the runtime config and that nobody joins any more expires from the
/// registry a `tokenTtl + sessionTtl` after its last join: the admission loop stops ticking
/// it (its lease goes) and its metric series go.
#[sqlx::test(migrator = "MIGRATOR")]
async fn idle_queues_expire_from_the_admission_loop(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    set_config(
        &app,
        json!({"queues": {"brief": {"tokenTtl": "1s", "sessionTtl": "1s", "paused": true}}}),
    )
    .await;
    let people = users(&app, 1, 0).await;
    assert_eq!(
        join(&app, &people[0], "brief").await.status(),
        StatusCode::CREATED
    );
    let lease = app.key("{q:brief}:lease");
    let mut conn = app.state.redis.raw_conn();
    let started = Instant::now();
    loop {
        let held: bool = conn.exists(&lease).await.unwrap();
        if held
            && metrics(&app)
                .await
                .contains("floodgate_queue_waiting{queue=\"brief\"}")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the loop never ticked the queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The operator drops the queue from the document; nobody joins it any more.
    set_config(&app, json!({"queues": {}})).await;
    let started = Instant::now();
    loop {
        let held: bool = conn.exists(&lease).await.unwrap();
        let labelled = metrics(&app).await.contains("queue=\"brief\"");
        if !held && !labelled {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "the idle queue is still ticked (lease held: {held}, metric labels: {labelled})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<String> = set_members(&app)
        .await
        .into_iter()
        .filter(|m| m == "brief")
        .collect();
    assert!(left.is_empty(), "the registry still names the idle queue");
}

/// Admission latency of one queue while 200 other configured queues are ticked and every
/// Redis answer takes 3 ms (a Redis in another zone): each join to `fast` is admitted within
/// the bound, because no queue's tick waits for another's.
#[sqlx::test(migrator = "MIGRATOR")]
async fn many_queues_over_a_slow_redis_do_not_delay_another_queues_admission(pool: PgPool) {
    const OTHERS: usize = 200;
    const BOUND: Duration = Duration::from_millis(600);
    let redis_url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| floodgate_app::config::DEFAULT_REDIS_URL.into());
    let upstream = redis_url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap();
    let proxy = proxy::Proxy::start(upstream).await;
    let app = TestApp::spawn_with(pool, |s| {
        s.redis_url = format!("redis://{}", proxy.addr).into();
    })
    .await;
    let direct = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = direct.get_multiplexed_async_connection().await.unwrap();

    let mut queues = serde_json::Map::new();
    for i in 0..OTHERS {
        queues.insert(format!("load-{i}"), json!({"admitPerMinute": 600}));
    }
    queues.insert(
        "fast".into(),
        json!({"maxActiveUsers": 1000, "admitPerMinute": 60000}),
    );
    set_config(&app, json!({ "queues": queues })).await;
    proxy.set_latency(Duration::from_millis(3));
    // let every queue's loop start and settle
    tokio::time::sleep(Duration::from_secs(3)).await;

    let people = users(&app, 8, 0).await;
    let active = app.key("{q:fast}:active");
    let mut waits = Vec::new();
    for u in &people {
        let res = join(&app, u, "fast").await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let joined = Instant::now();
        loop {
            let score: Option<f64> = conn.zscore(&active, u.id.0).await.unwrap();
            if score.is_some() {
                break;
            }
            assert!(joined.elapsed() < Duration::from_secs(10), "never admitted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        waits.push(joined.elapsed());
    }
    let worst = waits.iter().max().copied().unwrap();
    eprintln!("admission waits with {OTHERS} other queues at 3 ms: {waits:?}");
    assert!(
        worst < BOUND,
        "admission to `fast` waited {worst:?} (bound {BOUND:?}); waits {waits:?}"
    );
}
