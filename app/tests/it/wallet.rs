//! Wallet: charges under heavy concurrency keep balance = ledger sum; Idempotency-Key replay,
//! mismatch and in-flight conflict; bad input.

use crate::common;

use common::{TestApp, expect_problem};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::MIGRATOR;

/// balance = ledger sum for every wallet, and the last ledger row's balance_after = balance.
pub async fn assert_wallets_consistent(pool: &PgPool) {
    let bad: i64 = sqlx::query_scalar(
        "select count(*) from wallets w
          where w.balance <> coalesce((select sum(amount) from wallet_ledger l where l.user_id = w.user_id), 0)
             or w.balance <> coalesce((select balance_after from wallet_ledger l where l.user_id = w.user_id order by ledger_id desc limit 1), 0)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(bad, 0, "wallets whose balance differs from their ledger");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_thousand_concurrent_charges_on_one_wallet(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 20).await;
    let token = app.customer("hot@example.com").await;
    let results = futures::future::join_all((1..=1000).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            let res = app.charge_keyed(token, i, None).await;
            (res.status(), i)
        }
    }))
    .await;
    let accepted: i64 = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, i)| i)
        .sum();
    let refused = results
        .iter()
        .filter(|(s, _)| *s != StatusCode::CREATED)
        .count();
    assert_eq!(
        refused,
        0,
        "{:?}",
        results
            .iter()
            .filter(|(s, _)| *s != StatusCode::CREATED)
            .take(3)
            .collect::<Vec<_>>()
    );
    let (balance, ledger): (i64, i64) = sqlx::query_as(
        "select w.balance, (select sum(amount) from wallet_ledger l where l.user_id = w.user_id)::bigint from wallets w",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(balance, accepted);
    assert_eq!(ledger, accepted);
    assert_eq!(accepted, 1000 * 1001 / 2);
    assert_wallets_consistent(&pool).await;
    let w: Value = app
        .get("/api/v1/wallet", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["balance"], accepted);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn idempotent_charges_replay_refuse_mismatch_and_in_flight(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let token = app.customer("idem@example.com").await;

    let first = app.charge_keyed(&token, 500, Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = app.charge_keyed(&token, 500, Some("key-1")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let b = expect_problem(
        app.charge_keyed(&token, 700, Some("key-1")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        b["type"]
            .as_str()
            .unwrap()
            .ends_with("idempotency-key-reused")
    );
    // another user may use the same key independently
    let other = app.customer("other@example.com").await;
    assert_eq!(
        app.charge_keyed(&other, 700, Some("key-1"))
            .await
            .headers()
            .get("idempotent-replayed"),
        None
    );

    // concurrent duplicates: exactly one applies, the rest are 409 in flight or replays
    let statuses = futures::future::join_all((0..50).map(|_| {
        let (app, token) = (&app, &token);
        async move { app.charge_keyed(token, 1_000, Some("key-burst")).await }
    }))
    .await;
    let mut fresh = 0;
    for res in statuses {
        match res.status() {
            StatusCode::CREATED if res.headers().get("idempotent-replayed").is_none() => fresh += 1,
            StatusCode::CREATED => {}
            StatusCode::CONFLICT => {
                assert_eq!(res.headers()["retry-after"], "1");
                let b = expect_problem(res, StatusCode::CONFLICT).await;
                assert!(
                    b["type"]
                        .as_str()
                        .unwrap()
                        .ends_with("idempotency-key-in-flight")
                );
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(fresh, 1);
    let w: Value = app
        .get("/api/v1/wallet", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["balance"], 1_500);

    // a failed attempt releases the key: the retry runs for real
    let b = expect_problem(
        app.charge_keyed(&token, 0, Some("key-fail")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["field"], "amount");
    assert_eq!(
        app.charge_keyed(&token, 5, Some("key-fail")).await.status(),
        StatusCode::CREATED
    );
    assert_wallets_consistent(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_wallet_input(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |s| s.max_charge = 1_000_000).await;
    let token = app.customer("bad@example.com").await;
    for amount in [0, -1, 1_000_001, i64::MAX] {
        let b = expect_problem(
            app.charge_keyed(&token, amount, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            b["detail"]
                .as_str()
                .unwrap()
                .contains("between 1 and 1000000"),
            "{b}"
        );
    }
    let res = app
        .http
        .post(app.url("/api/v1/wallet/charges"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"amount": 1.5}"#)
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    let res = app
        .http
        .post(app.url("/api/v1/wallet/charges"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"amount": 99999999999999999999999}"#)
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    expect_problem(
        app.charge_keyed(&token, 10, Some("has space")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        app.get("/api/v1/wallet", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // ledger pagination
    for i in 1..=5 {
        app.charge_keyed(&token, i, None).await;
    }
    let page: Value = app
        .get("/api/v1/wallet/transactions?limit=2", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["amount"], 5);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page: Value = app
        .get(
            &format!("/api/v1/wallet/transactions?limit=2&cursor={cursor}"),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["amount"], 3);
    let b = expect_problem(
        app.get("/api/v1/wallet/transactions?cursor=garbage", Some(&token))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["field"], "cursor");
    expect_problem(
        app.get("/api/v1/wallet/transactions?limit=0", Some(&token))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    expect_problem(
        app.get("/api/v1/wallet/transactions?limit=abc", Some(&token))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}
