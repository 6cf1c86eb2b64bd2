//! Cart handlers.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::{self, CartRow};
use crate::{
    auth::CurrentUser,
    error::{ApiError, ApiResult},
    goods::{GoodsId, Quantity},
    platform::money::Money,
    state::AppState,
};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Available,
    /// Less stock than the quantity in the cart (but some).
    InsufficientStock,
    SoldOut,
    /// The seller removed the goods.
    Deleted,
}

#[derive(Serialize, ToSchema)]
pub struct CartItem {
    pub goods_id: GoodsId,
    pub name: String,
    pub quantity: i32,
    #[schema(value_type = i64)]
    pub price: Money,
    #[schema(value_type = i64)]
    pub subtotal: Money,
    pub status: ItemStatus,
}

#[derive(Serialize, ToSchema)]
pub struct CartView {
    pub items: Vec<CartItem>,
    /// Sum of the subtotals of available items.
    #[schema(value_type = i64)]
    pub total: Money,
}

#[derive(Deserialize, ToSchema)]
pub struct SetQuantity {
    /// 0 removes the item.
    #[schema(minimum = 0, maximum = 1000)]
    pub quantity: i64,
}

fn view(rows: Vec<CartRow>) -> CartView {
    let items: Vec<CartItem> = rows
        .into_iter()
        .map(|r| {
            let status = match () {
                _ if r.deleted => ItemStatus::Deleted,
                _ if r.stock == 0 => ItemStatus::SoldOut,
                _ if r.stock < r.quantity => ItemStatus::InsufficientStock,
                _ => ItemStatus::Available,
            };
            CartItem {
                goods_id: r.goods_id,
                name: r.name,
                quantity: r.quantity,
                price: r.price,
                // prices are never negative: an overflow can only be upward
                subtotal: r.price.checked_mul(r.quantity).unwrap_or(Money::MAX),
                status,
            }
        })
        .collect();
    let total = items
        .iter()
        .filter(|i| matches!(i.status, ItemStatus::Available))
        .map(|i| i.subtotal)
        .fold(Money::ZERO, |acc, s| {
            acc.checked_add(s).unwrap_or(Money::MAX)
        });
    CartView { items, total }
}

/// The cart with current prices and availability.
#[utoipa::path(get, path = "/cart", tag = "cart", security(("bearer" = [])), responses((status = 200, body = CartView)))]
pub async fn get_cart(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<CartView>> {
    Ok(Json(view(
        state
            .db
            .run(async |c| store::rows(c, user.id).await)
            .await?,
    )))
}

/// Set the quantity of a goods item in the cart (0 removes it). Repeating it is harmless.
#[utoipa::path(put, path = "/cart/items/{goods_id}", tag = "cart", security(("bearer" = [])), params(("goods_id" = i64, Path)), request_body = SetQuantity,
    responses((status = 200, body = CartView), (status = 404, content_type = "application/problem+json"), (status = 422, content_type = "application/problem+json")))]
pub async fn put_item(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(goods_id): Path<i64>,
    Json(req): Json<SetQuantity>,
) -> ApiResult<Json<CartView>> {
    if !(0..=Quantity::MAX).contains(&req.quantity) {
        return Err(ApiError::invalid(
            "quantity",
            format!("quantity must be between 0 and {}", Quantity::MAX),
        ));
    }
    let rows = state
        .db
        .run(async |c| {
            if req.quantity == 0 {
                store::remove(&mut *c, user.id, &[goods_id]).await?;
            } else if !store::set(&mut *c, user.id, GoodsId(goods_id), req.quantity as i32).await? {
                return Err(ApiError::not_found("goods"));
            }
            Ok(store::rows(c, user.id).await?)
        })
        .await?;
    Ok(Json(view(rows)))
}

/// Remove a goods item from the cart.
#[utoipa::path(delete, path = "/cart/items/{goods_id}", tag = "cart", security(("bearer" = [])), params(("goods_id" = i64, Path)),
    responses((status = 204)))]
pub async fn delete_item(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(goods_id): Path<i64>,
) -> ApiResult<StatusCode> {
    state
        .db
        .run(async |c| store::remove(c, user.id, &[goods_id]).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
