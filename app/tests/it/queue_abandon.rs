//! The waiting room end to end with half the line abandoning: 1,000 users join a paused
//! queue with `maxActiveUsers: 50`, half stop polling for longer than `abandonAfter`; after
//! the unpause every polling user is admitted, holds and pays, and no abandoned place ever
//! takes a session slot.

use crate::common;
use crate::concerts_support;

use std::time::{Duration, Instant};

use common::TestApp;
use concerts_support::{
    admin, assert_money_and_seats_consistent, concert, crowd::run_crowd, set_config, users,
};
use redis::AsyncCommands;
use serde_json::json;
use sqlx::PgPool;

use crate::MIGRATOR;

#[sqlx::test(migrator = "MIGRATOR")]
async fn half_the_line_abandons_and_does_not_stall_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let cfg = |paused: bool| json!({"queues": {"half": {"maxActiveUsers": 50, "admitPerMinute": 60000, "sessionTtl": "30s", "abandonAfter": "3s", "paused": paused}}});
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
            let mut conn = app_state.redis.raw_conn();
            let _: () = conn.set(key, doc.to_string()).await.unwrap();
            let _: () = conn.publish(changed, version).await.unwrap();
        })
    };
    let started = Instant::now();
    let paid = run_crowd(
        &app,
        "half",
        &people,
        &c.seats,
        c.schedule,
        |i| i % 2 == 1,
        50,
    )
    .await;
    unpause.await.unwrap();
    assert_eq!(paid, 500, "every polling user was admitted and paid");
    eprintln!(
        "500 of 1000 (half abandoned) through cap 50 in {:?}",
        started.elapsed()
    );
    let mut conn = app.state.redis.raw_conn();
    let abandoned: Option<u64> = conn
        .hget(app.key("{q:half}:stats"), "abandoned")
        .await
        .unwrap();
    let admitted: Option<u64> = conn
        .hget(app.key("{q:half}:stats"), "admitted")
        .await
        .unwrap();
    assert_eq!(
        admitted,
        Some(500),
        "no abandoned place took a session slot"
    );
    assert_eq!(abandoned, Some(500));
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("floodgate_queue_abandoned_total{queue=\"half\"} 500"),
        "{metrics}"
    );
    assert_money_and_seats_consistent(&app).await;
}
