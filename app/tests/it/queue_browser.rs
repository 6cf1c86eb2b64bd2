//! The waiting-room page in headless Chromium: a brand-new user opens
//! `/waiting-room/concert-42` (the demo concert's queue, from the seed), signs up, sees
//! position, people ahead and ETA, is admitted, holds a seat, tops up and pays. Screenshots
//! are saved under `.data/screenshots/`.
//!
//! Needs Debian's `chromium` and `playwright-core`; `scripts/browser-tests.sh` installs both
//! and runs this test (it is ignored in a plain `cargo test`).

use crate::common;
use crate::concerts_support;

use std::{path::PathBuf, process::Stdio, time::Duration};

use chrono::Utc;
use common::TestApp;
use concerts_support::set_config;
use floodgate_app::{
    auth::UserId,
    queue::{QueueId, service},
};
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::MIGRATOR;

#[sqlx::test(migrator = "MIGRATOR")]
#[ignore = "needs chromium and playwright-core: run scripts/browser-tests.sh"]
async fn a_new_user_waits_is_admitted_holds_and_pays_in_the_browser(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    floodgate_app::seed::seed(&pool).await.unwrap();
    // slow admission first so the page shows a real place and ETA
    let cfg = |rate: u32| json!({"queues": {"concert-42": {"maxActiveUsers": 50, "admitPerMinute": rate, "sessionTtl": "5m"}}});
    set_config(&app, cfg(4)).await;
    let q = QueueId::parse("concert-42").unwrap();
    for i in 0..5 {
        service::join(&app.state, &q, UserId(900_000 + i), Utc::now())
            .await
            .unwrap();
    }

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join(".data/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let email = format!("browser-{}@example.com", uuid::Uuid::new_v4().simple());
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("app/tests/browser/waiting_room.mjs"))
        .arg(format!("http://{}", app.addr))
        .arg(&shots)
        .arg(&email)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("browser: {line}");
            if let Some(shown) = line.strip_prefix("WAITING ") {
                let shown: serde_json::Value = serde_json::from_str(shown).unwrap();
                assert_eq!(shown["position"], "6", "{shown}");
                assert!(
                    shown["ahead"].as_str().unwrap().parse::<u32>().unwrap() >= 1,
                    "{shown}"
                );
                assert!(shown["eta"].as_str().unwrap().contains("minute"), "{shown}");
                set_config(&app, cfg(6_000)).await;
            }
            seen.push(line);
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("browser run timed out");
    assert!(status.success(), "browser script failed: {seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ADMITTED ") && l.contains("admitted-title")),
        "focus moves to the admitted heading: {seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("DONE"));
    for shot in [
        "waiting-room-waiting.png",
        "waiting-room-admitted.png",
        "waiting-room-done.png",
    ] {
        assert!(
            std::fs::metadata(shots.join(shot)).unwrap().len() > 1_000,
            "{shot} saved"
        );
    }
    let paid: i64 = sqlx::query_scalar(
        "select count(*) from reservations r join users u using (user_id) where u.email = $1 and r.status = 'confirmed'",
    )
    .bind(&email)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(paid, 1, "the new user paid for one seat");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_page_is_self_contained_html(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let res = app.get("/waiting-room/concert-42", None).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("const QUEUE = 'concert-42';"));
    assert!(html.contains("aria-live=\"polite\""));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets"
    );
    let res = app.get("/waiting-room/Bad_Queue", None).await;
    common::expect_problem(res, reqwest::StatusCode::UNPROCESSABLE_ENTITY).await;
}
