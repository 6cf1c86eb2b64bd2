//! The order write path: placing and cancelling. Flash-sale orders (one goods item, no
//! coupon, not from the cart) go through group commit instead ([`super::batch`]).
//!
//! Placing is all-or-nothing in the caller's transaction. The per-user rows (order, lines,
//! coupon, wallet) are written first and the shared hot rows (stock) last, in goods-id order,
//! so a stock row lock is held for one statement plus the commit, and two orders for the same
//! items cannot deadlock — with each other, with a cancellation (same order: per-user rows,
//! then stock) or with a group-commit batch (wallets in user-id order, then the goods row).

use axum::http::HeaderMap;
use sqlx::PgConnection;

use super::{
    rules::{self, Discount},
    soldout,
    store::{self, OrderLine, OrderView},
};
use crate::{
    auth::UserId,
    coupons,
    error::ApiError,
    goods::{self, GoodsId},
    platform::money::Money,
    state::AppState,
    wallet::{LedgerKind, store as wallet},
};

pub struct PlaceOrder {
    /// Normalised: merged, positive, sorted by goods id.
    pub lines: Vec<(GoodsId, i32)>,
    pub coupon_id: Option<i64>,
    /// Remove these goods from the cart once ordered.
    pub from_cart: bool,
}

/// Checks that can be answered without the database: the sold-out gate.
pub async fn precheck(
    state: &AppState,
    user: UserId,
    lines: &[(GoodsId, i32)],
) -> Result<soldout::Seen, ApiError> {
    let ids: Vec<GoodsId> = lines.iter().map(|(g, _)| *g).collect();
    let seen = soldout::check(state, user, &ids).await;
    if let Some(id) = seen.sold_out {
        return Err(out_of_stock(id));
    }
    Ok(seen)
}

pub(super) fn out_of_stock(id: GoodsId) -> ApiError {
    ApiError::conflict(
        "out-of-stock",
        format!("goods {} does not have enough stock left", id.0),
    )
    .with_extra(serde_json::json!({"goods_id": id.0}))
}

pub(super) fn sale_not_started(id: GoodsId, start: chrono::DateTime<chrono::Utc>) -> ApiError {
    ApiError::conflict(
        "sale-not-started",
        format!("goods {} go on sale at {}", id.0, start.to_rfc3339()),
    )
}

pub async fn place(
    state: &AppState,
    conn: &mut PgConnection,
    headers: &HeaderMap,
    user: UserId,
    order: &PlaceOrder,
    seen: &soldout::Seen,
) -> Result<OrderView, ApiError> {
    let ids: Vec<i64> = order.lines.iter().map(|(g, _)| g.0).collect();
    let found = goods::store::many(conn, &ids).await?;
    let now = chrono::Utc::now();
    let mut lines = Vec::with_capacity(order.lines.len());
    let mut passes: Vec<crate::queue::QueuePass> = Vec::new();
    for &(id, quantity) in &order.lines {
        let g = found
            .iter()
            .find(|g| g.id == id)
            .ok_or_else(|| ApiError::not_found(&format!("goods {}", id.0)))?;
        if let Some(start) = g.sale_starts_at
            && start > now
        {
            return Err(sale_not_started(id, start));
        }
        if let Some(queue) = &g.queue_id
            && !passes.iter().any(|p| &p.queue_id == queue)
        {
            passes.push(crate::queue::require_pass(state, headers, queue, user).await?);
        }
        lines.push(OrderLine {
            goods_id: id,
            quantity,
            unit_price: g.price,
        });
    }
    let subtotal = rules::subtotal(lines.iter().map(|l| (l.unit_price, l.quantity)))?;
    let (coupon, discount) = match order.coupon_id {
        Some(c) => {
            let d = coupons::store::lock_unused(conn, user, c).await?;
            (Some(c), rules::discount(d, subtotal))
        }
        None => (None, Money::ZERO),
    };
    let mut placed = store::insert(conn, user, subtotal, discount, coupon).await?;
    store::insert_lines(conn, placed.id, &lines).await?;
    if let Some(c) = coupon {
        coupons::store::mark_used(conn, c, placed.id).await?;
    }
    if placed.total.is_positive() {
        wallet::debit(
            conn,
            user,
            placed.total,
            LedgerKind::OrderPayment,
            Some(placed.id),
        )
        .await?;
    }
    // after the wallet (the per-user lock a group-commit batch takes first, so the two paths
    // settle one session's orders one after the other), before the stock
    for pass in &passes {
        let previous = store::use_pass(
            conn,
            &pass.queue_id,
            user,
            pass.session_expires_ms,
            placed.id,
        )
        .await?;
        rules::pass_unused(&pass.queue_id, previous)?;
    }
    if order.from_cart {
        crate::cart::store::remove(conn, user, &ids).await?;
    }
    for line in &lines {
        if !store::take_stock(conn, line.goods_id, line.quantity, line.unit_price).await? {
            return Err(stock_failure(state, conn, line, seen).await);
        }
    }
    placed.lines = lines;
    Ok(placed)
}

/// Why a stock update matched nothing: the price moved, the goods vanished, or stock ran out
/// (then the sold-out gate is closed for the requests behind us).
async fn stock_failure(
    state: &AppState,
    conn: &mut PgConnection,
    line: &OrderLine,
    seen: &soldout::Seen,
) -> ApiError {
    let current: Result<Option<(i32, Money)>, _> =
        sqlx::query_as("select stock, price from goods where goods_id = $1 and deleted_at is null")
            .bind(line.goods_id)
            .fetch_optional(&mut *conn)
            .await;
    match current {
        Ok(Some((_, price))) if price != line.unit_price => ApiError::conflict(
            "price-changed",
            format!(
                "the price of goods {} changed to {price} while ordering; review and order again",
                line.goods_id.0
            ),
        ),
        Ok(Some((stock, _))) => {
            if stock == 0 {
                // still in the transaction that saw the stock at 0: the buyers read now are
                // every buyer (nobody buys without a restock, which reopens the gate)
                match soldout::buyers(conn, line.goods_id).await {
                    Ok(buyers) => soldout::mark(state, seen, line.goods_id, &buyers).await,
                    Err(e) => return e.into(),
                }
            }
            out_of_stock(line.goods_id)
        }
        Ok(None) => ApiError::not_found(&format!("goods {}", line.goods_id.0)),
        Err(e) => e.into(),
    }
}

/// Cancels a paid order: refund, restock, coupon released. Cancelling a cancelled order
/// returns it unchanged. Like placing, the per-user rows (coupon, wallet) come before the
/// stock rows, so a cancellation cannot deadlock with an order of the same user.
pub async fn cancel(
    conn: &mut PgConnection,
    user: UserId,
    order: i64,
) -> Result<(OrderView, Vec<GoodsId>), ApiError> {
    let Some(mut cancelled) = store::mark_cancelled(conn, user, order).await? else {
        let existing = store::find(&mut *conn, user, order)
            .await?
            .ok_or_else(|| ApiError::not_found("order"))?;
        return Ok((existing, Vec::new()));
    };
    if let Some(c) = cancelled.coupon_id {
        coupons::store::release(conn, c).await?;
    }
    if cancelled.total.is_positive() {
        wallet::credit(
            conn,
            user,
            cancelled.total,
            LedgerKind::OrderRefund,
            Some(order),
        )
        .await?;
    }
    let restocked = store::restock(conn, order).await?;
    cancelled.lines = store::lines_of(&mut *conn, &[order])
        .await?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    Ok((cancelled, restocked))
}

/// After a commit that changed stock: drop cached goods and sold-out flags.
pub async fn after_stock_change(state: &AppState, ids: &[GoodsId]) {
    if ids.is_empty() {
        return;
    }
    state
        .cache
        .invalidate(&state.redis, &goods::cache_families(ids.iter().copied()))
        .await;
}

pub fn coupon_discount(amount: Option<Money>, percent: Option<i32>) -> Option<Discount> {
    match (amount, percent) {
        (Some(a), None) => Some(Discount::Amount(a)),
        (None, Some(p)) => Some(Discount::Percent(p)),
        _ => None,
    }
}
