//! Builders for what tests set up through the API: a seller and its goods, charged wallets,
//! orders. One copy each, used by every area.

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use super::TestApp;

/// A seller (roles customer and seller) of one app, to make goods with.
pub struct Seller<'a> {
    app: &'a TestApp,
    pub token: String,
}

impl TestApp {
    /// The seller `seller@example.com`, signed up and logged in.
    pub async fn seller(&self) -> Seller<'_> {
        self.seller_named("seller@example.com").await
    }

    /// A seller with the given email, signed up and logged in.
    pub async fn seller_named(&self, email: &str) -> Seller<'_> {
        let token = self.user_with_roles(email, &["customer", "seller"]).await;
        Seller { app: self, token }
    }

    /// Charges `amount` to the wallet of `token`; asserts 201.
    pub async fn charge(&self, token: &str, amount: i64) {
        let res = self.charge_keyed(token, amount, None).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }

    /// `POST /api/v1/wallet/charges`, with an Idempotency-Key when given; the answer as is.
    pub async fn charge_keyed(&self, token: &str, amount: i64, key: Option<&str>) -> Response {
        self.keyed_post(
            "/api/v1/wallet/charges",
            &json!({ "amount": amount }),
            token,
            key,
        )
        .await
    }

    /// `POST /api/v1/orders` of `items`; the answer as is.
    pub async fn order(&self, token: &str, items: Value) -> Response {
        self.order_keyed(token, items, None).await
    }

    /// `POST /api/v1/orders` of `items`, with an Idempotency-Key when given; the answer as is.
    pub async fn order_keyed(&self, token: &str, items: Value, key: Option<&str>) -> Response {
        self.keyed_post("/api/v1/orders", &json!({ "items": items }), token, key)
            .await
    }

    async fn keyed_post(
        &self,
        path: &str,
        body: &Value,
        token: &str,
        key: Option<&str>,
    ) -> Response {
        let mut req = self.http.post(self.url(path)).bearer_auth(token).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.unwrap()
    }
}

impl Seller<'_> {
    /// New goods named "item" at `price` with `stock` units; returns its id (asserts 201).
    pub async fn goods(&self, price: i64, stock: i64) -> i64 {
        self.goods_from(&json!({"name": "item", "price": price, "stock": stock}))
            .await
    }

    /// New goods from a full request body; returns its id (asserts 201).
    pub async fn goods_from(&self, body: &Value) -> i64 {
        let res = self
            .app
            .post_json("/api/v1/goods", body, Some(&self.token))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
    }
}
