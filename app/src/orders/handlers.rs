//! Order handlers.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    batch, rules, service,
    store::{self, OrderView},
};
use crate::{
    goods::soldout,
    auth::CurrentUser,
    error::{ApiError, ApiResult},
    goods::GoodsId,
    idempotency::{self, IdempotencyKey},
    pagination::{PageQuery, Paged},
    state::AppState,
};

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
    pub coupon_id: Option<i64>,
}

fn encode(order: &OrderView) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(order).map_err(ApiError::internal)
}

/// Place an order paid from the wallet. Send an `Idempotency-Key` so a retry never orders twice.
#[utoipa::path(post, path = "/orders", tag = "orders", security(("bearer" = [])), request_body = CreateOrderRequest,
    params(("Idempotency-Key" = Option<crate::idempotency::IdempotencyKey>, Header, nullable = false), ("X-Queue-Token" = Option<String>, Header, nullable = false, description = "Admitted pass, for goods behind a waiting room")),
    responses(
        (status = 201, body = OrderView),
        (status = 403, description = "Goods behind a waiting room need an admitted pass (`queue-pass-missing`, `-forged`, `-expired`, `-wrong-queue`, `-wrong-user`); `queue-pass-used`: this pass already paid for an order (its `order_id` is in the problem)", content_type = "application/problem+json"),
        (status = 404, description = "Unknown goods or coupon", content_type = "application/problem+json"),
        (status = 409, description = "out-of-stock, insufficient-balance, sale-not-started, price-changed, coupon-unavailable", content_type = "application/problem+json"),
        (status = 422, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    headers: HeaderMap,
    Json(req): Json<CreateOrderRequest>,
) -> ApiResult<Response> {
    let explicit = match (&req.items, req.from_cart) {
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
        (None, false) => return Err(ApiError::invalid("items", "send items or from_cart: true")),
    };
    if req.coupon_id.is_some_and(|c| c <= 0) {
        return Err(ApiError::invalid("coupon_id", "coupon_id must be positive"));
    }
    // explicit items: a sold-out answer comes from Redis before any database work
    let seen = match &explicit {
        Some(lines) => Some(service::precheck(&state, user.id, lines).await?),
        None => None,
    };
    // the database paths run boxed: their futures are large, and kept inline they made every
    // request's future (the sold-out refusal's too) that large to move and box (#18)
    Box::pin(place(state, user, key, headers, req, explicit, seen)).await
}

async fn place(
    state: AppState,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    headers: HeaderMap,
    req: CreateOrderRequest,
    explicit: Option<Vec<(GoodsId, i32)>>,
    seen: Option<soldout::Seen>,
) -> ApiResult<Response> {
    let fp = idempotency::fingerprint("POST /orders", &req);
    // the flash-sale shape shares a transaction with the other orders for the same goods
    if let (Some([(goods, quantity)]), None, Some(seen)) =
        (explicit.as_deref(), req.coupon_id, seen.as_ref())
    {
        return batch::place_one(
            &state,
            &headers,
            user.id,
            *goods,
            *quantity,
            key,
            fp,
            seen.clone(),
        )
        .await;
    }
    let mut ordered: Vec<GoodsId> = Vec::new();
    let res = idempotency::run(&state, user.id, key, &fp, async |conn| {
        // from the cart: read it inside the transaction, after the idempotency claim, so a
        // replay does not depend on what the cart holds now
        let lines = match explicit {
            Some(lines) => lines,
            None => {
                let raw = crate::cart::store::lines(&mut *conn, user.id).await?;
                if raw.is_empty() {
                    return Err(ApiError::invalid("from_cart", "the cart is empty"));
                }
                rules::normalise_lines(&raw)?
            }
        };
        let seen = match seen {
            Some(seen) => seen,
            None => service::precheck(&state, user.id, &lines).await?,
        };
        let order = service::PlaceOrder {
            lines,
            coupon_id: req.coupon_id,
            from_cart: req.from_cart,
        };
        let placed = service::place(&state, conn, &headers, user.id, &order, &seen).await?;
        ordered = order.lines.iter().map(|(g, _)| *g).collect();
        Ok((StatusCode::CREATED, encode(&placed)?))
    })
    .await;
    service::after_stock_change(&state, &ordered).await;
    res
}

/// Own orders, newest first.
#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<OrderView>)))]
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Paged<OrderView>>> {
    let page = q.parse(20)?;
    let (rows, lines) = state
        .db
        .run(async |c| {
            let rows = store::page(&mut *c, user.id, page).await?;
            let ids: Vec<i64> = rows.iter().map(|o| o.id).collect();
            let lines = store::lines_of(c, &ids).await?;
            Ok::<_, sqlx::Error>((rows, lines))
        })
        .await?;
    let mut paged = Paged::from_rows(rows, page, |o| o.id);
    for (order_id, line) in lines {
        if let Some(o) = paged.items.iter_mut().find(|o| o.id == order_id) {
            o.lines.push(line);
        }
    }
    Ok(Json(paged))
}

/// One own order (another user's order is 404).
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, content_type = "application/problem+json")))]
pub async fn detail(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrderView>> {
    let order = state
        .db
        .run(async |c| {
            let mut order = store::find(&mut *c, user.id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("order"))?;
            order.lines = store::lines_of(c, &[id])
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            Ok::<_, ApiError>(order)
        })
        .await?;
    Ok(Json(order))
}

/// Cancel a paid order: refund to the wallet, restock, release the coupon. Cancelling again
/// returns the cancelled order unchanged.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<OrderView>> {
    let (mut order, restocked) = state
        .db
        .tx(async |tx| service::cancel(tx, user.id, id).await)
        .await?;
    if !restocked.is_empty() {
        soldout::clear(&state, &restocked).await;
        service::after_stock_change(&state, &restocked).await;
    }
    if order.lines.is_empty() {
        order.lines = state
            .db
            .run(async |c| store::lines_of(c, &[id]).await)
            .await?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
    }
    Ok(Json(order))
}
