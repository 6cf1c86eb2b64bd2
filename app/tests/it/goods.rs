//! Goods and cart: seller-only writes, ownership, cache-aside that never serves stale data
//! after a write returns, one loader under a stampede, reads without Redis, bad input.

use crate::common;

use common::{TestApp, expect_problem};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;

pub fn goods_body(name: &str, price: i64, stock: i64) -> Value {
    json!({"name": name, "description": "d", "price": price, "stock": stock, "category": "hoodies"})
}

async fn put(app: &TestApp, path: &str, body: &Value, token: &str) -> reqwest::Response {
    app.http
        .put(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.http
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn cache_count(metrics: &str, cache: &str, result: &str) -> f64 {
    let prefix =
        format!("floodgate_cache_requests_total{{cache=\"{cache}\",result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn authorization_matrix(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let customer = app.customer("cust@example.com").await;
    let seller = app
        .user_with_roles("s1@example.com", &["customer", "seller"])
        .await;
    let other = app
        .user_with_roles("s2@example.com", &["customer", "seller"])
        .await;

    let b = expect_problem(
        app.post_json("/api/v1/goods", &goods_body("x", 1, 1), Some(&customer))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(b["detail"].as_str().unwrap().contains("seller"));
    expect_problem(
        app.post_json("/api/v1/goods", &goods_body("x", 1, 1), None)
            .await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = app
        .post_json(
            "/api/v1/goods",
            &goods_body("Hoodie", 39000, 10),
            Some(&seller),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let path = format!("/api/v1/goods/{id}");

    let b = expect_problem(
        put(&app, &path, &goods_body("Mine now", 1, 1), &other).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("not-owner"));
    expect_problem(delete(&app, &path, &other).await, StatusCode::FORBIDDEN).await;
    expect_problem(
        put(&app, &path, &goods_body("x", 1, 1), &customer).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    expect_problem(
        put(
            &app,
            "/api/v1/goods/999999",
            &goods_body("x", 1, 1),
            &seller,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // nobody reads another user's cart, wallet or orders: every read is scoped to the caller
    put(
        &app,
        &format!("/api/v1/cart/items/{id}"),
        &json!({"quantity": 2}),
        &customer,
    )
    .await;
    let cart: Value = app
        .get("/api/v1/cart", Some(&seller))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"], json!([]));
    expect_problem(
        app.get("/api/v1/cart", None).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn writes_are_never_followed_by_stale_reads(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app
        .user_with_roles("s@example.com", &["customer", "seller"])
        .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let g: Value = app
            .post_json(
                "/api/v1/goods",
                &goods_body(&format!("g{i}"), 1000 + i, 5),
                Some(&seller),
            )
            .await
            .json()
            .await
            .unwrap();
        ids.push(g["id"].as_i64().unwrap());
    }
    // newest first, keyset pages of 15
    let page: Value = app.get("/api/v1/goods", None).await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 15);
    assert_eq!(page["items"][0]["id"], ids[19]);
    let next: Value = app
        .get(
            &format!(
                "/api/v1/goods?cursor={}",
                page["next_cursor"].as_str().unwrap()
            ),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["items"].as_array().unwrap().len(), 5);
    assert_eq!(next["next_cursor"], Value::Null);

    let id = ids[19];
    let path = format!("/api/v1/goods/{id}");
    for round in 0..30 {
        // warm the caches, write, and read straight after the write returned
        let _ = app.get(&path, None).await;
        let _ = app.get("/api/v1/goods", None).await;
        let price = 5000 + round;
        assert_eq!(
            put(&app, &path, &goods_body("repriced", price, 5), &seller)
                .await
                .status(),
            StatusCode::OK
        );
        let detail: Value = app.get(&path, None).await.json().await.unwrap();
        assert_eq!(
            detail["price"], price,
            "stale detail after update in round {round}"
        );
        let list: Value = app.get("/api/v1/goods", None).await.json().await.unwrap();
        assert_eq!(
            list["items"][0]["price"], price,
            "stale list after update in round {round}"
        );
    }
    assert_eq!(
        delete(&app, &path, &seller).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_problem(app.get(&path, None).await, StatusCode::NOT_FOUND).await;
    let list: Value = app.get("/api/v1/goods", None).await.json().await.unwrap();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["id"] != id),
        "deleted goods still listed"
    );
    expect_problem(delete(&app, &path, &seller).await, StatusCode::NOT_FOUND).await;

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        cache_count(&metrics, "goods_detail", "hit") + cache_count(&metrics, "goods_list", "hit")
            > 0.0,
        "{metrics}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_hundred_concurrent_misses_load_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app
        .user_with_roles("s@example.com", &["customer", "seller"])
        .await;
    let g: Value = app
        .post_json("/api/v1/goods", &goods_body("hot", 100, 5), Some(&seller))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/goods/{}", g["id"]);
    let before = app.get("/metrics", None).await.text().await.unwrap();
    let bodies = futures::future::join_all(
        (0..200).map(|_| async { app.get(&path, None).await.json::<Value>().await.unwrap() }),
    )
    .await;
    assert!(bodies.iter().all(|b| b["name"] == "hot"));
    let after = app.get("/metrics", None).await.text().await.unwrap();
    let loads =
        cache_count(&after, "goods_detail", "load") - cache_count(&before, "goods_detail", "load");
    assert_eq!(loads, 1.0, "200 concurrent misses must hit PostgreSQL once");
    let hits_and_misses = cache_count(&after, "goods_detail", "hit")
        + cache_count(&after, "goods_detail", "miss")
        - cache_count(&before, "goods_detail", "hit")
        - cache_count(&before, "goods_detail", "miss");
    assert_eq!(hits_and_misses, 200.0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn reads_fall_through_to_postgres_without_redis(pool: PgPool) {
    let seed = TestApp::spawn(pool.clone()).await;
    let seller = seed
        .user_with_roles("s@example.com", &["customer", "seller"])
        .await;
    let g: Value = seed
        .post_json(
            "/api/v1/goods",
            &goods_body("still here", 100, 5),
            Some(&seller),
        )
        .await
        .json()
        .await
        .unwrap();
    // a port nothing listens on
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(pool, |s| {
        s.redis_url = SecretString::from(format!("redis://127.0.0.1:{dead}"))
    })
    .await;
    let detail: Value = app
        .get(&format!("/api/v1/goods/{}", g["id"]), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["name"], "still here");
    let list = app.get("/api/v1/goods", None).await;
    assert_eq!(list.status(), StatusCode::OK);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_goods_and_cart_input(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let seller = app
        .user_with_roles("s@example.com", &["customer", "seller"])
        .await;
    for (body, field) in [
        (goods_body("", 1, 1), "name"),
        (goods_body("x", -5, 1), "price"),
        (goods_body("x", 1, -1), "stock"),
        (goods_body("x", 1, 10_000_000_000), "stock"),
        (
            json!({"name": "x", "price": 1, "stock": 1, "image_url": "javascript:alert(1)"}),
            "image_url",
        ),
        (
            json!({"name": "x", "price": 1, "stock": 1, "queue_id": "Not A Queue"}),
            "queue_id",
        ),
    ] {
        let b = expect_problem(
            app.post_json("/api/v1/goods", &body, Some(&seller)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(b["field"], field, "{b}");
    }
    expect_problem(
        app.post_json("/api/v1/goods", &json!({"name": "x"}), Some(&seller))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    expect_problem(
        app.get("/api/v1/goods/abc", None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        app.get("/api/v1/goods/-1", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        app.get("/api/v1/goods?limit=101", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    expect_problem(
        app.get("/api/v1/goods?cursor=%%%", None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    let g: Value = app
        .post_json("/api/v1/goods", &goods_body("g", 100, 3), Some(&seller))
        .await
        .json()
        .await
        .unwrap();
    let item = format!("/api/v1/cart/items/{}", g["id"]);
    for q in [-1, 1001] {
        let b = expect_problem(
            put(&app, &item, &json!({"quantity": q}), &seller).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(b["field"], "quantity");
    }
    expect_problem(
        put(
            &app,
            "/api/v1/cart/items/424242",
            &json!({"quantity": 1}),
            &seller,
        )
        .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // setting twice is idempotent; status flags stock problems
    put(&app, &item, &json!({"quantity": 5}), &seller).await;
    let cart: Value = put(&app, &item, &json!({"quantity": 5}), &seller)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"].as_array().unwrap().len(), 1);
    assert_eq!(cart["items"][0]["status"], "insufficient_stock");
    assert_eq!(cart["items"][0]["subtotal"], 500);
    let cart: Value = put(&app, &item, &json!({"quantity": 2}), &seller)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["total"], 200);
    delete(&app, &format!("/api/v1/goods/{}", g["id"]), &seller).await;
    let cart: Value = app
        .get("/api/v1/cart", Some(&seller))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"][0]["status"], "deleted");
    assert_eq!(cart["total"], 0);
    let cart: Value = put(&app, &item, &json!({"quantity": 0}), &seller)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cart["items"], json!([]));
}
