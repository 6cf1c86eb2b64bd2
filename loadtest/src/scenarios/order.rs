//! Orders of one hot goods item by a few hot users (the e-commerce report: 4 users, 1
//! product), then a check that stock never went below zero and fell by exactly what was sold.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::Invariant;
use super::api::{discover_goods, idempotency_key, number_at, param_or};
use super::wallet::{self, as_hot_user};
use crate::metrics::{Metrics, TagSet};
use crate::vu::Vu;

/// JSON ids go out as numbers when they look like numbers.
pub fn id_value(id: &str) -> Value {
    id.parse::<i64>().map_or_else(|_| json!(id), |n| json!(n))
}

async fn stock(vu: &mut Vu, goods_id: &str, name: &str) -> Option<i64> {
    let r = vu
        .get(format!("/api/v1/goods/{goods_id}"))
        .name(name)
        .anonymous()
        .send()
        .await;
    number_at(&r.value(), "/stock")
}

pub fn setup(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let goods_id = param_or(vu, "goods_id", discover_goods).await?;
        wallet::setup(vu).await?;
        // Fund the hot users so that orders fail on stock, not on balance.
        let users: usize = vu
            .param("hot_users")
            .and_then(|n| n.parse().ok())
            .unwrap_or(wallet::HOT_USERS);
        let chunk: i64 = vu
            .param("fund_amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or(100_000);
        for i in 0..users {
            vu.state.access_token = vu.param(&format!("hot_token_{i}"));
            for _ in 0..10 {
                let key = idempotency_key(vu);
                let r = vu
                    .post("/api/v1/wallet/charges")
                    .name("setup-fund")
                    .header("idempotency-key", &key)
                    .json(&json!({ "amount": chunk }))
                    .send()
                    .await;
                vu.check("setup funding 2xx", (200..300).contains(&r.status));
            }
        }
        if let Some(s) = stock(vu, &goods_id, "setup-stock").await {
            vu.ctx().set_param("initial_stock", s.to_string());
        }
        Ok(())
    })
}

pub fn order(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        as_hot_user(vu).await;
        let goods_id = vu.param("goods_id").unwrap_or_default();
        let key = idempotency_key(vu);
        let body = json!({ "items": [{ "goods_id": id_value(&goods_id), "quantity": 1 }] });
        let r = vu
            .post("/api/v1/orders")
            .name("order")
            .header("idempotency-key", &key)
            .json(&body)
            .expect(&[201, 402, 409])
            .send()
            .await;
        vu.check(
            "order 201 or a clean refusal",
            matches!(r.status, 201 | 402 | 409),
        );
        vu.sleep(1.0).await;
        Ok(())
    })
}

pub fn verify<'a>(vu: &'a mut Vu, m: &'a Metrics) -> BoxFuture<'a, anyhow::Result<Vec<Invariant>>> {
    Box::pin(async move {
        let goods_id = vu.param("goods_id").unwrap_or_default();
        let sold = m
            .requests_matching(&TagSet::from([
                ("name".into(), "order".into()),
                ("status".into(), "201".into()),
            ]))
            .reqs as i64;
        let after = stock(vu, &goods_id, "verify-stock").await;
        let before: Option<i64> = vu.param("initial_stock").and_then(|s| s.parse().ok());
        let mut out = vec![Invariant::new(
            "stock never below zero",
            after.is_some_and(|s| s >= 0),
            format!("stock after the run: {after:?}"),
        )];
        if let (Some(b), Some(a)) = (before, after) {
            out.push(Invariant::new(
                "no oversell: stock fell by exactly the orders accepted",
                b - a == sold && sold <= b,
                format!(
                    "stock {b} → {a}, {sold} orders accepted (valid when only this run orders)"
                ),
            ));
        }
        Ok(out)
    })
}
