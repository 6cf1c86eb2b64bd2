//! Order handlers.

use axum::{
    Json,
    extract::{Path, Query, State},
    response::Response,
};

use super::{
    request::CreateOrderRequest,
    service::{self, NewOrder},
    store::{self, OrderView},
};
use crate::{
    auth::CurrentUser,
    error::{ApiError, ApiResult},
    idempotency::IdempotencyKey,
    pagination::{PageQuery, Paged},
    platform::ids::OrderId,
    queue::QueueToken,
    state::AppState,
};

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
    pass: Option<QueueToken>,
    Json(request): Json<CreateOrderRequest>,
) -> ApiResult<Response> {
    let order = NewOrder {
        user: user.id,
        key,
        pass,
        request,
    };
    service::place_order(&state, order).await
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
            let ids: Vec<OrderId> = rows.iter().map(|o| o.id).collect();
            let lines = store::lines_of(c, &ids).await?;
            Ok::<_, sqlx::Error>((rows, lines))
        })
        .await?;
    let mut paged = Paged::from_rows(rows, page, |o| o.id.0);
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
    Path(id): Path<OrderId>,
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
    Path(id): Path<OrderId>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(service::cancel_order(&state, user.id, id).await?))
}
