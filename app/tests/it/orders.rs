//! Orders: no oversell under 500 concurrent buyers, wallets consistent, cancellation
//! (refund, restock, coupon released, idempotent), no deadlock between opposite multi-item
//! orders, ownership, sale start, idempotency, bad input.

use crate::common;

use std::time::Duration;

use common::{TestApp, expect_problem};
use floodgate_app::{
    auth::UserId,
    goods::{GoodsId, soldout},
    idempotency::IdempotencyKey,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

async fn assert_consistent(pool: &PgPool) {
    crate::common::assert_wallets_match_ledgers(pool).await;
    // sold = committed (paid) order lines, for every goods item
    let mismatched: i64 = sqlx::query_scalar(
        "select count(*) from goods g where g.stock < 0 or g.stock + coalesce((
            select sum(l.quantity) from order_lines l join orders o using (order_id)
             where l.goods_id = g.goods_id and o.status = 'paid'), 0) <> (select initial from initial_stock i where i.goods_id = g.goods_id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(mismatched, 0, "stock + sold differs from the initial stock");
}

async fn record_initial_stock(pool: &PgPool) {
    sqlx::query(
        "create table if not exists initial_stock as select goods_id, stock as initial from goods",
    )
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn five_hundred_buyers_one_hundred_units(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 30).await;
    let seller = app.seller().await;
    let goods = seller.goods(1_000, 100).await;
    record_initial_stock(&pool).await;
    let buyers = app.bulk_customers(500, "buyer").await;
    futures::future::join_all(buyers.iter().map(|t| app.charge(t, 5_000))).await;

    let statuses = futures::future::join_all(buyers.iter().map(|t| async {
        app.order(t, json!([{"goods_id": goods, "quantity": 1}]))
            .await
            .status()
    }))
    .await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!(created, 100, "{statuses:?}");
    assert_eq!(conflicts, 400);
    let stock: i32 = sqlx::query_scalar("select stock from goods where goods_id = $1")
        .bind(goods)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stock, 0);
    let paid: i64 = sqlx::query_scalar("select count(*) from orders where status = 'paid'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(paid, 100);
    let spent: i64 = sqlx::query_scalar("select count(*) from wallets where balance = 4000")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(spent, 100, "exactly the buyers who got a 201 were charged");
    assert_consistent(&pool).await;
    // sold-out answers come from the gate now; they are still 409 out-of-stock
    let b = expect_problem(
        app.order(&buyers[0], json!([{"goods_id": goods, "quantity": 1}]))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("out-of-stock"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cancel_refunds_restocks_releases_and_is_idempotent(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let seller = app.seller().await;
    let admin = app
        .user_with_roles("admin@example.com", &["customer", "admin"])
        .await;
    let goods = seller.goods(10_000, 1).await;
    record_initial_stock(&pool).await;
    let buyer = app.customer("buyer@example.com").await;
    let rival = app.customer("rival@example.com").await;
    app.charge(&buyer, 20_000).await;
    app.charge(&rival, 20_000).await;

    // a 10 % coupon, issued and persisted
    let now = chrono::Utc::now();
    let camp: Value = app.post_json("/api/v1/coupon-campaigns", &json!({"name": "ten", "discount_percent": 10, "total_quantity": 5,
        "starts_at": now - chrono::Duration::minutes(1), "ends_at": now + chrono::Duration::hours(1)}), Some(&admin)).await.json().await.unwrap();
    let camp_id = camp["id"].as_i64().unwrap();
    assert_eq!(
        app.post_json(
            &format!("/api/v1/coupon-campaigns/{camp_id}/issue"),
            &json!({}),
            Some(&buyer)
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let coupon_id = loop {
        let coupons: Value = app
            .get("/api/v1/coupons", Some(&buyer))
            .await
            .json()
            .await
            .unwrap();
        if let Some(id) = coupons[0]["coupon_id"].as_i64() {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let res = app
        .post_json(
            "/api/v1/orders",
            &json!({"items": [{"goods_id": goods, "quantity": 1}], "coupon_id": coupon_id}),
            Some(&buyer),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let placed: Value = res.json().await.unwrap();
    assert_eq!(placed["subtotal"], 10_000);
    assert_eq!(placed["discount"], 1_000);
    assert_eq!(placed["total"], 9_000);
    let w: Value = app
        .get("/api/v1/wallet", Some(&buyer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["balance"], 11_000);
    expect_problem(
        app.order(&rival, json!([{"goods_id": goods, "quantity": 1}]))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    // the coupon cannot be used twice
    let b = expect_problem(
        app.post_json(
            "/api/v1/orders",
            &json!({"items": [{"goods_id": goods, "quantity": 1}], "coupon_id": coupon_id}),
            Some(&buyer),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        b["type"].as_str().unwrap().ends_with("coupon-unavailable")
            || b["type"].as_str().unwrap().ends_with("out-of-stock"),
        "{b}"
    );

    let id = placed["id"].as_i64().unwrap();
    // another user's order is 404, for reading and cancelling
    expect_problem(
        app.get(&format!("/api/v1/orders/{id}"), Some(&rival)).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        app.post_json(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({}),
            Some(&rival),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let cancelled: Value = app
        .post_json(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({}),
            Some(&buyer),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let again: Value = app
        .post_json(
            &format!("/api/v1/orders/{id}/cancel"),
            &json!({}),
            Some(&buyer),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, cancelled);
    let w: Value = app
        .get("/api/v1/wallet", Some(&buyer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["balance"], 20_000);
    let coupons: Value = app
        .get("/api/v1/coupons", Some(&buyer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(coupons[0]["used_at"], Value::Null);
    // the restocked unit is sellable again at once (the sold-out gate was cleared)
    assert_eq!(
        app.order(&rival, json!([{"goods_id": goods, "quantity": 1}]))
            .await
            .status(),
        StatusCode::CREATED
    );
    let detail: Value = app
        .get(&format!("/api/v1/goods/{goods}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["stock"], 0);
    assert_consistent(&pool).await;
    let tx: Value = app
        .get("/api/v1/wallet/transactions", Some(&buyer))
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = tx["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["order_refund", "order_payment", "charge"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn opposite_multi_item_orders_do_not_deadlock(pool: PgPool) {
    let app = TestApp::spawn_with(pool.clone(), |s| s.db_pool_size = 30).await;
    let seller = app.seller().await;
    let a = seller.goods(10, 1_000).await;
    let b = seller.goods(10, 1_000).await;
    record_initial_stock(&pool).await;
    let buyers = app.bulk_customers(100, "b").await;
    futures::future::join_all(buyers.iter().map(|t| app.charge(t, 1_000))).await;
    let results = futures::future::join_all(buyers.iter().enumerate().map(|(i, t)| {
        let items = if i % 2 == 0 {
            json!([{"goods_id": a, "quantity": 1}, {"goods_id": b, "quantity": 2}])
        } else {
            json!([{"goods_id": b, "quantity": 1}, {"goods_id": a, "quantity": 2}])
        };
        let app = &app;
        async move { app.order(t, items).await.status() }
    }))
    .await;
    assert!(
        results.iter().all(|s| *s == StatusCode::CREATED),
        "{results:?}"
    );
    assert_consistent(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn order_rules_and_bad_input(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let seller = app.seller().await;
    let buyer = app.customer("buyer@example.com").await;
    let goods = seller.goods(700, 10).await;

    let b = expect_problem(
        app.order(&buyer, json!([{"goods_id": goods, "quantity": 1}]))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        b["type"]
            .as_str()
            .unwrap()
            .ends_with("insufficient-balance"),
        "{b}"
    );
    app.charge(&buyer, 10_000).await;
    for (items, field) in [
        (json!([]), "items"),
        (json!([{"goods_id": goods, "quantity": 0}]), "quantity"),
        (json!([{"goods_id": goods, "quantity": -2}]), "quantity"),
        (
            json!([{"goods_id": goods, "quantity": 1_000_000}]),
            "quantity",
        ),
        (json!([{"goods_id": 0, "quantity": 1}]), "goods_id"),
    ] {
        let b = expect_problem(
            app.order(&buyer, items).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(b["field"], field, "{b}");
    }
    expect_problem(
        app.order(&buyer, json!([{"goods_id": 987654, "quantity": 1}]))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        app.order(&buyer, json!([{"goods_id": goods, "quantity": 11}]))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    expect_problem(
        app.post_json("/api/v1/orders", &json!({}), Some(&buyer))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    expect_problem(
        app.post_json("/api/v1/orders", &json!({"from_cart": true}), Some(&buyer))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/orders",
            &json!({"items": [{"goods_id": goods, "quantity": 1}], "coupon_id": 999}),
            Some(&buyer),
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        app.get("/api/v1/orders/abc", Some(&buyer)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        app.get("/api/v1/orders/424242", Some(&buyer)).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // sale not started
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let upcoming: Value = app
        .post_json(
            "/api/v1/goods",
            &json!({"name": "soon", "price": 1, "stock": 5, "sale_starts_at": later}),
            Some(&seller.token),
        )
        .await
        .json()
        .await
        .unwrap();
    let b = expect_problem(
        app.order(&buyer, json!([{"goods_id": upcoming["id"], "quantity": 1}]))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("sale-not-started"));

    // from the cart, which is emptied of what was ordered
    app.http
        .put(app.url(&format!("/api/v1/cart/items/{goods}")))
        .bearer_auth(&buyer)
        .json(&json!({"quantity": 2}))
        .send()
        .await
        .unwrap();
    let res = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&buyer)
        .header("Idempotency-Key", "cart-1")
        .json(&json!({"from_cart": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["lines"][0]["quantity"], 2);
    let cart: Value = app
        .get("/api/v1/cart", Some(&buyer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"], json!([]));
    // the same key replays instead of ordering again from the (now empty) cart
    let res = app
        .http
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&buyer)
        .header("Idempotency-Key", "cart-1")
        .json(&json!({"from_cart": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(res.json::<Value>().await.unwrap(), first);
    let list: Value = app
        .get("/api/v1/orders", Some(&buyer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["lines"][0]["goods_id"], goods);
}

/// Orders that went through a group-commit batch so far (`/metrics`).
async fn orders_batched(app: &TestApp) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let name = "floodgate_group_commit_batch_size_sum{batch=\"orders\"}";
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// A client that lost its 201 and retries with the same Idempotency-Key after the item sold
/// out gets its order replayed, not a sold-out answer for an order it has — on the batched
/// single-item path and on the multi-item path. Anyone else is refused from the gate, the
/// buyer's own new orders too (#18).
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retried_order_after_sell_out_is_replayed(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let seller = app.seller().await;
    let hot = seller.goods(100, 1).await;
    let pair = seller.goods(100, 1).await;
    let other = seller.goods(100, 10).await;
    let buyers = app.bulk_customers(3, "r").await;
    for b in &buyers {
        app.charge(b, 10_000).await;
    }
    let keyed = |token: &str, key: &str, items: Value| {
        app.http
            .post(app.url("/api/v1/orders"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&json!({"items": items}))
            .send()
    };
    for (goods, items) in [
        (hot, json!([{"goods_id": hot, "quantity": 1}])),
        (
            pair,
            json!([{"goods_id": pair, "quantity": 1}, {"goods_id": other, "quantity": 1}]),
        ),
    ] {
        let key = format!("lost-{goods}");
        let first = keyed(&buyers[0], &key, items.clone()).await.unwrap();
        assert_eq!(first.status(), StatusCode::CREATED);
        let first: Value = first.json().await.unwrap();
        // someone else finds it sold out, which sets the gate
        let late = app
            .order(&buyers[1], json!([{"goods_id": goods, "quantity": 1}]))
            .await;
        let p = expect_problem(late, StatusCode::CONFLICT).await;
        assert!(p["type"].as_str().unwrap().ends_with("/out-of-stock"));
        let late = app
            .order(&buyers[2], json!([{"goods_id": goods, "quantity": 1}]))
            .await;
        let p = expect_problem(late, StatusCode::CONFLICT).await;
        assert!(p["type"].as_str().unwrap().ends_with("/out-of-stock"));
        // the first buyer's retry is its order, replayed
        let retry = keyed(&buyers[0], &key, items.clone()).await.unwrap();
        assert_eq!(retry.status(), StatusCode::CREATED, "retry of {goods}");
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(retry.json::<Value>().await.unwrap(), first);
        // a new order of the same buyer, with another key or none, is refused by the gate
        // (#18): only the exact retry passes it, so the refusal never reaches PostgreSQL
        let new_key = format!("new-{goods}");
        let batches = orders_batched(&app).await;
        let again = keyed(&buyers[0], &new_key, items.clone()).await.unwrap();
        let p = expect_problem(again, StatusCode::CONFLICT).await;
        assert!(p["type"].as_str().unwrap().ends_with("/out-of-stock"));
        let unkeyed = app.order(&buyers[0], items).await;
        let p = expect_problem(unkeyed, StatusCode::CONFLICT).await;
        assert!(p["type"].as_str().unwrap().ends_with("/out-of-stock"));
        assert_eq!(
            orders_batched(&app).await,
            batches,
            "a refusal reached a batch"
        );
        let buyer: i64 =
            sqlx::query_scalar("select user_id from orders where idempotency_key = $1")
                .bind(&key)
                .fetch_one(&pool)
                .await
                .unwrap();
        let gate = async |key: Option<&str>| {
            let key = key.map(|k| IdempotencyKey::parse(k).unwrap());
            soldout::check(&app.state, UserId(buyer), key.as_ref(), &[GoodsId(goods)])
                .await
                .sold_out
        };
        assert_eq!(gate(Some(&key)).await, None, "the retry of {key} passes");
        assert_eq!(gate(Some(&new_key)).await, Some(GoodsId(goods)));
        assert_eq!(gate(None).await, Some(GoodsId(goods)));
    }
    let orders: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 2, "one order per item sold, no more");
}
