//! The runtime config survives the loss of its Redis document (issue 13, item 8): a Redis
//! flush or a failover to a replica without the key must not open a paused queue, turn
//! `random` into FIFO or reset breakers and TTLs. Only this test's own config key is deleted
//! (never FLUSHALL on the shared Redis).

use crate::common;
use crate::concerts_support;

use std::time::Duration;

use common::TestApp;
use concerts_support::{set_config, users};
use floodgate_app::platform::runtime_config::POLL_INTERVAL;
use floodgate_crds::runtime::Queueing;
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// After the document disappears the app keeps the last good config (the paused queue stays
/// paused and joinable, `random` stays random, the seat-hold TTL stays), says so in
/// `floodgate_runtime_config_missing`, and applies the document again when it is back.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_lost_config_document_keeps_the_last_good_config(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let opens = chrono::Utc::now() + chrono::Duration::hours(1);
    set_config(
        &app,
        json!({
            "queues": {"held": {"paused": true, "queueing": "random", "opensAt": opens, "maxActiveUsers": 7}},
            "ttls": {"seatHold": "42s"},
        }),
    )
    .await;
    let before = app.state.runtime.get();
    let people = users(&app, 2, 0).await;
    let join = |i: usize| {
        app.http
            .post(app.url("/api/v1/queues/held/tokens"))
            .bearer_auth(&people[i].token)
            .send()
    };
    assert_eq!(join(0).await.unwrap().status(), StatusCode::CREATED);

    let mut conn = app.state.redis.raw_conn();
    let removed: i64 = conn.del(app.key("config")).await.unwrap();
    assert_eq!(removed, 1);
    // two polls of the reader, and a tick of the admission loop
    tokio::time::sleep(POLL_INTERVAL * 2 + Duration::from_millis(500)).await;

    let now = app.state.runtime.get();
    let q = now.queue("held");
    assert!(q.paused, "the paused queue was opened by the loss");
    assert_eq!(q.queueing, Queueing::Random, "random ordering was reset");
    assert_eq!(q.max_active_users, 7);
    assert_eq!(*now, *before, "the last good config was not kept");
    let place: Value = app
        .get("/api/v1/queues/held", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(place["status"], "not-open", "{place}");
    assert_eq!(place["active"], 0, "someone was admitted: {place}");
    assert_eq!(
        join(1).await.unwrap().status(),
        StatusCode::CREATED,
        "the configured queue stays joinable"
    );
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        sample(&text, "floodgate_runtime_config_missing"),
        Some(1.0),
        "the loss is visible in the metrics"
    );

    // The operator republishes: applied as usual, and the gauge drops.
    set_config(&app, json!({"queues": {"held": {"paused": false}}})).await;
    assert!(!app.state.runtime.get().queue("held").paused);
    let text = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(sample(&text, "floodgate_runtime_config_missing"), Some(0.0));
}
