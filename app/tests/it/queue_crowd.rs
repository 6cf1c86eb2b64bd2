//! The waiting room end to end: 1,000 users join a queue with `maxActiveUsers: 50`, poll at
//! the server's hint, and each admitted user holds a seat and pays (the payment ends the
//! session). Never above the cap at any moment (an independent monitor samples Redis), all
//! who keep polling admitted, no seat sold twice, wallets equal their ledgers.

use crate::common;
use crate::concerts_support;

use std::time::Instant;

use common::TestApp;
use concerts_support::{
    admin, assert_money_and_seats_consistent, concert, crowd::run_crowd, set_config, users,
};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_thousand_users_through_a_cap_of_fifty(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    set_config(&app, json!({"queues": {"e2e": {"maxActiveUsers": 50, "admitPerMinute": 60000, "sessionTtl": "30s", "abandonAfter": "10s"}}})).await;
    let admin = admin(&app).await;
    let c = concert(&app, &admin, Some("e2e"), 1000, 1_000).await;
    let people = users(&app, 1000, 5_000).await;
    let started = Instant::now();
    let paid = run_crowd(&app, "e2e", &people, &c.seats, c.schedule, |_| false, 50).await;
    assert_eq!(
        paid, 1000,
        "everyone who kept polling was admitted and paid"
    );
    eprintln!("1000 users through cap 50 in {:?}", started.elapsed());
    let sold: i64 = sqlx::query_scalar(
        "select count(*) from seats where schedule_id = $1 and sold_to is not null",
    )
    .bind(c.schedule)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(sold, 1000);
    let balances: i64 = sqlx::query_scalar("select count(*) from wallets where balance = 4000")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(balances, 1000);
    assert_money_and_seats_consistent(&app).await;
    let q: Value = app
        .get("/api/v1/queues/e2e", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["waiting"], 0);
}
