//! The goods-list cache has a hard bound (issue #13 item 3): a spray of attacker-chosen
//! cursors neither grows the process's stale copies past their configured bound nor mints a
//! Redis field per cursor, and loads whose requests are dropped mid-load leave nothing behind.

use crate::common;

use std::time::Duration;

use common::TestApp;
use floodgate_app::pagination;
use futures::{StreamExt, stream};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

const CURSORS: i64 = 50_000;
const MAX_ENTRIES: usize = 1_000;
const MAX_BYTES: usize = 1 << 20;

async fn seed_goods(app: &TestApp, n: usize) {
    let seller = app
        .user_with_roles("s@example.com", &["customer", "seller"])
        .await;
    for i in 0..n {
        let body = json!({"name": format!("g{i}"), "description": "d", "price": 100, "stock": 5, "category": "hoodies"});
        let res = app.post_json("/api/v1/goods", &body, Some(&seller)).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn goods_list_cache_stays_bounded_under_unique_cursors(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| {
        s.stale_max_entries = MAX_ENTRIES;
        s.stale_max_bytes = MAX_BYTES;
    })
    .await;
    seed_goods(&app, 20).await;
    // the first page, as every visitor reads it
    assert_eq!(
        app.get("/api/v1/goods", None).await.status(),
        StatusCode::OK
    );

    let failures = stream::iter(1..=CURSORS)
        .map(|i| {
            let app = &app;
            async move {
                let path = format!(
                    "/api/v1/goods?limit={}&cursor={}",
                    1 + i % 100,
                    pagination::encode(i)
                );
                app.get(&path, None).await.status()
            }
        })
        .buffer_unordered(64)
        .filter(|s| std::future::ready(*s != StatusCode::OK))
        .count()
        .await;
    assert_eq!(failures, 0, "every cursor page answers 200");

    let usage = app.state.cache.stale_usage();
    eprintln!("after {CURSORS} unique cursors: stale copies {usage:?}");
    assert!(
        usage.entries <= MAX_ENTRIES && usage.bytes <= MAX_BYTES,
        "stale copies {usage:?} exceed the bound of {MAX_ENTRIES} entries / {MAX_BYTES} bytes"
    );
    let mut conn = app.state.redis.raw_conn();
    let fields: i64 = redis::cmd("HLEN")
        .arg(app.key("{c:goods:list}:data"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        fields <= 100,
        "{fields} fields in the Redis goods:list family: cursors mint cache keys"
    );
    // the first page is still served, from the cache
    let first: Value = app.get("/api/v1/goods", None).await.json().await.unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 15);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cancelled_goods_loads_leave_nothing_in_flight(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.request_timeout_ms = 300).await;
    seed_goods(&app, 3).await;
    // every list load blocks on the table lock until the request timeout drops it
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("lock table goods in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let statuses = futures::future::join_all((1..=20).map(|limit| {
        let app = &app;
        async move {
            app.get(&format!("/api/v1/goods?limit={limit}"), None)
                .await
                .status()
        }
    }))
    .await;
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    let left = app.state.cache.in_flight_len();
    lock.rollback().await.unwrap();
    assert_eq!(left, 0, "{left} cancelled loads left in in_flight");

    // and the list loads again once the lock is gone
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        app.get("/api/v1/goods?limit=1", None).await.status(),
        StatusCode::OK
    );
}
