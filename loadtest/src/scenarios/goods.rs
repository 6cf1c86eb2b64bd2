//! Goods reads and cart insert (the GoodsPia and e-commerce reports), plus the bare GET
//! used to measure the generator itself against the ceiling server.

use futures::future::BoxFuture;
use serde_json::json;

use super::api::{discover_goods, ensure_logged_in, param_or};
use crate::vu::Vu;

pub fn ceiling(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let path = vu.param("path").unwrap_or_else(|| "/".into());
        let r = vu.get(path).name("ceiling").send().await;
        vu.check("status 200", r.status == 200);
        Ok(())
    })
}

pub fn setup(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        param_or(vu, "goods_id", discover_goods).await?;
        Ok(())
    })
}

pub fn list(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let r = vu
            .get("/api/v1/goods?limit=15")
            .name("goods-list")
            .send()
            .await;
        let ok = r.status == 200;
        vu.check("goods list 200", ok);
        if ok {
            let n = super::api::list_of(&r.value()).map_or(0, Vec::len);
            vu.check("goods list has at most 15 items", n <= 15);
        }
        Ok(())
    })
}

/// The e-commerce product script: `sleep(1)` then one GET.
pub fn detail(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        let id = vu.param("goods_id").unwrap_or_default();
        vu.sleep(1.0).await;
        let r = vu
            .get(format!("/api/v1/goods/{id}"))
            .name("goods-detail")
            .send()
            .await;
        vu.check("goods detail 200", r.status == 200);
        Ok(())
    })
}

/// GoodsPia cart insert: each VU is a logged-in user setting a quantity (idempotent PUT).
pub fn cart_insert(vu: &mut Vu) -> BoxFuture<'_, anyhow::Result<()>> {
    Box::pin(async move {
        ensure_logged_in(vu).await?;
        let id = vu.param("goods_id").unwrap_or_default();
        let quantity = 1 + vu.iteration % 5;
        let r = vu
            .put(format!("/api/v1/cart/items/{id}"))
            .name("cart-insert")
            .json(&json!({ "quantity": quantity }))
            .send()
            .await;
        if r.status == 401 {
            // Access tokens live 5 minutes; log in again next iteration.
            vu.state.access_token = None;
        }
        vu.check("cart insert 2xx", (200..300).contains(&r.status));
        Ok(())
    })
}
