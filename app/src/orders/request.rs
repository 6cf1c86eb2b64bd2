//! The body of `POST /orders`, and what it asks for once checked.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules;
use crate::{error::ApiError, goods::GoodsId, platform::ids::CouponId};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ItemRequest {
    pub goods_id: i64,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

/// Either `items` or `from_cart: true`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"items": [{"goods_id": 1, "quantity": 1}]}))]
pub struct CreateOrderRequest {
    #[serde(default)]
    pub items: Option<Vec<ItemRequest>>,
    #[serde(default)]
    pub from_cart: bool,
    pub coupon_id: Option<CouponId>,
}

/// A checked order request.
pub struct OrderRequest {
    /// The items sent, normalised ([`rules::normalise_lines`]); `None`: the cart's, read in
    /// the order's transaction.
    pub lines: Option<Vec<(GoodsId, i32)>>,
    pub coupon_id: Option<CouponId>,
}

impl OrderRequest {
    /// The flash-sale shape (one goods item, no coupon, not from the cart), which shares a
    /// transaction with the other orders for the same goods.
    pub fn flash_line(&self) -> Option<(GoodsId, i32)> {
        match (self.lines.as_deref(), self.coupon_id) {
            (Some(&[line]), None) => Some(line),
            _ => None,
        }
    }
}

impl CreateOrderRequest {
    pub fn parse(&self) -> Result<OrderRequest, ApiError> {
        let lines = match (&self.items, self.from_cart) {
            (Some(_), true) => {
                return Err(ApiError::invalid(
                    "items",
                    "send either items or from_cart, not both",
                ));
            }
            (Some(items), false) => Some(rules::normalise_lines(
                &items
                    .iter()
                    .map(|i| (i.goods_id, i.quantity))
                    .collect::<Vec<_>>(),
            )?),
            (None, true) => None,
            (None, false) => {
                return Err(ApiError::invalid("items", "send items or from_cart: true"));
            }
        };
        if self.coupon_id.is_some_and(|c| c.0 <= 0) {
            return Err(ApiError::invalid("coupon_id", "coupon_id must be positive"));
        }
        Ok(OrderRequest {
            lines,
            coupon_id: self.coupon_id,
        })
    }
}
