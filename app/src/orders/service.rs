//! The order write path: placing and cancelling. [`place_order`] is the one entry: flash-sale
//! orders (one goods item, no coupon, not from the cart) go through group commit
//! ([`super::batch`]), the others through [`place`] in their own transaction; both judge each
//! line with [`rules::judge_line`].
//!
//! Placing is all-or-nothing in the caller's transaction. The per-user rows (order, lines,
//! coupon, wallet) are written first and the shared hot rows (stock) last, in goods-id order,
//! so a stock row lock is held for one statement plus the commit, and two orders for the same
//! items cannot deadlock — with each other, with a cancellation (same order: per-user rows,
//! then stock) or with a group-commit batch (wallets in user-id order, then the goods row).

use axum::{http::StatusCode, response::Response};
use sqlx::PgConnection;

use super::{
    batch::{self, OrderJob},
    request::{CreateOrderRequest, OrderRequest},
    rules::{self, SaleTerms},
    store::{self, OrderLine, OrderView},
};
use crate::{
    auth::UserId,
    coupons,
    error::{ApiError, ApiResult},
    goods::{self, GoodsId, StockMove, soldout},
    idempotency::{self, IdempotencyKey},
    platform::{
        ids::{CouponId, OrderId},
        money::Money,
    },
    queue::{self, PassCheck, QueueToken},
    state::AppState,
    wallet::{LedgerKind, store as wallet},
};

/// One `POST /orders` as received.
pub struct NewOrder {
    pub user: UserId,
    pub key: Option<IdempotencyKey>,
    pub pass: Option<QueueToken>,
    pub request: CreateOrderRequest,
}

/// Places an order paid from the wallet, by whichever path fits it, and once it committed
/// drops the cached goods.
pub async fn place_order(state: &AppState, order: NewOrder) -> ApiResult<Response> {
    let parsed = order.request.parse()?;
    // explicit items: a sold-out answer comes from Redis before any database work
    let seen = match &parsed.lines {
        Some(lines) => Some(precheck(state, order.user, order.key.as_ref(), lines).await?),
        None => None,
    };
    // the placing paths run boxed: even with each database call boxed (`platform::db`), the
    // idempotency and group-commit steps make their future ~1.9 KiB, and inline it made every
    // request's future (the sold-out refusal's too) that large to move (#18)
    Box::pin(place_checked(state, order, parsed, seen)).await
}

async fn place_checked(
    state: &AppState,
    order: NewOrder,
    parsed: OrderRequest,
    seen: Option<soldout::Seen>,
) -> ApiResult<Response> {
    let fingerprint = idempotency::fingerprint("POST /orders", &order.request);
    // checked before any transaction: Redis stays out of them
    let pass = queue::check_pass_ahead(state, order.pass.as_ref(), order.user).await;
    if let (Some((goods, quantity)), Some(seen)) = (parsed.flash_line(), &seen) {
        let job = OrderJob {
            user: order.user,
            quantity,
            key: order.key,
            fingerprint,
            pass,
            seen: seen.clone(),
        };
        return batch::place_one(state, goods, job).await;
    }
    let buyer = Buyer {
        user: order.user,
        key: order.key.clone(),
        pass: &pass,
    };
    let mut ordered: Vec<GoodsId> = Vec::new();
    let res = idempotency::run(state, order.user, order.key, &fingerprint, async |conn| {
        // from the cart: read it inside the transaction, after the idempotency claim, so a
        // replay does not depend on what the cart holds now
        let lines = match parsed.lines {
            Some(lines) => lines,
            None => cart_lines(conn, order.user).await?,
        };
        let seen = match seen {
            Some(seen) => seen,
            None => precheck(state, order.user, buyer.key.as_ref(), &lines).await?,
        };
        let wanted = PlaceOrder {
            lines,
            coupon_id: parsed.coupon_id,
            from_cart: order.request.from_cart,
            seen,
        };
        let placed = place(state, conn, &buyer, &wanted).await?;
        ordered = placed.lines.iter().map(|l| l.goods_id).collect();
        let body = serde_json::to_value(&placed).map_err(ApiError::internal)?;
        Ok((StatusCode::CREATED, body))
    })
    .await;
    goods::stock_changed(state, &ordered, StockMove::Taken).await;
    res
}

async fn cart_lines(conn: &mut PgConnection, user: UserId) -> ApiResult<Vec<(GoodsId, i32)>> {
    let raw = crate::cart::store::lines(&mut *conn, user).await?;
    if raw.is_empty() {
        return Err(ApiError::invalid("from_cart", "the cart is empty"));
    }
    rules::normalise_lines(&raw)
}

/// Checks that can be answered without the database: the sold-out gate, which lets only a
/// keyed retry of an order of the goods through.
pub async fn precheck(
    state: &AppState,
    user: UserId,
    key: Option<&IdempotencyKey>,
    lines: &[(GoodsId, i32)],
) -> Result<soldout::Seen, ApiError> {
    let ids: Vec<GoodsId> = lines.iter().map(|(g, _)| *g).collect();
    let seen = soldout::check(state, user, key, &ids).await;
    if let Some(id) = seen.sold_out {
        return Err(rules::out_of_stock(id));
    }
    Ok(seen)
}

/// Who orders, under which Idempotency-Key, with the waiting-room pass checked ahead.
pub struct Buyer<'a> {
    pub user: UserId,
    pub key: Option<IdempotencyKey>,
    pub pass: &'a PassCheck,
}

pub struct PlaceOrder {
    /// Normalised: merged, positive, sorted by goods id.
    pub lines: Vec<(GoodsId, i32)>,
    pub coupon_id: Option<CouponId>,
    /// Remove these goods from the cart once ordered.
    pub from_cart: bool,
    /// The sold-out gate as the order saw it, to close it without racing a restock.
    pub seen: soldout::Seen,
}

/// Places one order in the caller's transaction (the single-order path).
pub async fn place(
    state: &AppState,
    conn: &mut PgConnection,
    buyer: &Buyer<'_>,
    order: &PlaceOrder,
) -> Result<OrderView, ApiError> {
    let (lines, queued) = priced_lines(conn, buyer.pass, &order.lines).await?;
    let subtotal = rules::subtotal(lines.iter().map(|l| (l.unit_price, l.quantity)))?;
    let discount = match order.coupon_id {
        Some(c) => coupons::store::lock_unused(conn, buyer.user, c)
            .await?
            .on(subtotal),
        None => Money::ZERO,
    };
    let (user, key) = (buyer.user, buyer.key.as_ref());
    let mut placed = store::insert(conn, user, key, subtotal, discount, order.coupon_id).await?;
    store::insert_lines(conn, placed.id, &lines).await?;
    if let Some(c) = order.coupon_id {
        coupons::store::mark_used(conn, c, placed.id).await?;
    }
    if placed.total.is_positive() {
        let paid = LedgerKind::OrderPayment;
        wallet::debit(conn, buyer.user, placed.total, paid, Some(placed.id.0)).await?;
    }
    // after the wallet (the per-user lock a group-commit batch takes first, so the two paths
    // settle one session's orders one after the other), before the stock
    if queued {
        use_pass(conn, buyer, placed.id).await?;
    }
    if order.from_cart {
        let ids: Vec<i64> = lines.iter().map(|l| l.goods_id.0).collect();
        crate::cart::store::remove(conn, buyer.user, &ids).await?;
    }
    for line in &lines {
        if !store::take_stock(conn, line.goods_id, line.quantity, line.unit_price).await? {
            return Err(stock_failure(state, conn, line, &order.seen).await);
        }
    }
    placed.lines = lines;
    Ok(placed)
}

/// The lines at today's prices, each judged ([`rules::judge_line`]); and whether any goods
/// are behind a waiting room.
async fn priced_lines(
    conn: &mut PgConnection,
    pass: &PassCheck,
    wanted: &[(GoodsId, i32)],
) -> Result<(Vec<OrderLine>, bool), ApiError> {
    let ids: Vec<i64> = wanted.iter().map(|(g, _)| g.0).collect();
    let found = goods::store::many(conn, &ids).await?;
    let now = chrono::Utc::now();
    let mut queued = false;
    let mut lines = Vec::with_capacity(wanted.len());
    for &(id, quantity) in wanted {
        let g = found
            .iter()
            .find(|g| g.id == id)
            .ok_or_else(|| ApiError::not_found(&format!("goods {}", id.0)))?;
        let terms = SaleTerms {
            id,
            sale_starts_at: g.sale_starts_at,
            queue_id: g.queue_id.as_deref(),
        };
        rules::judge_line(terms, now, pass)?;
        queued |= g.queue_id.is_some();
        lines.push(OrderLine {
            goods_id: id,
            quantity,
            unit_price: g.price,
        });
    }
    Ok((lines, queued))
}

/// Records that the buyer's admitted session paid for `order`: refused if it already paid
/// for another ([`rules::pass_unused`]).
async fn use_pass(conn: &mut PgConnection, buyer: &Buyer<'_>, order: OrderId) -> ApiResult<()> {
    // judge_line let goods behind a waiting room through only with an admitted pass of it
    let PassCheck::Admitted {
        queue,
        session_expires_ms,
    } = buyer.pass
    else {
        return Err(ApiError::internal(
            "a waiting-room line without an admitted pass",
        ));
    };
    let previous = store::use_pass(conn, queue, buyer.user, *session_expires_ms, order).await?;
    rules::pass_unused(queue, previous)
}

/// Why a stock update matched nothing: the price moved, the goods vanished, or stock ran out
/// (then the sold-out gate is closed for the requests behind us).
async fn stock_failure(
    state: &AppState,
    conn: &mut PgConnection,
    line: &OrderLine,
    seen: &soldout::Seen,
) -> ApiError {
    let id = line.goods_id;
    match store::stock_and_price(&mut *conn, id).await {
        Ok(Some((_, price))) if price != line.unit_price => ApiError::conflict(
            "price-changed",
            format!(
                "the price of goods {} changed to {price} while ordering; review and order again",
                id.0
            ),
        ),
        Ok(Some((stock, _))) => {
            if stock == 0 {
                // still in the transaction that saw the stock at 0: the keyed orders read now
                // are all there are (nobody buys without a restock, which reopens the gate)
                match soldout::members(conn, id).await {
                    Ok(members) => soldout::mark(state, seen, id, &members).await,
                    Err(e) => return e.into(),
                }
            }
            rules::out_of_stock(id)
        }
        Ok(None) => ApiError::not_found(&format!("goods {}", id.0)),
        Err(e) => e.into(),
    }
}

/// Cancels a paid order of `user` and, once committed, reopens its goods
/// ([`goods::stock_changed`]). Cancelling a cancelled order returns it unchanged.
pub async fn cancel_order(state: &AppState, user: UserId, order: OrderId) -> ApiResult<OrderView> {
    let (mut cancelled, restocked) = state
        .db
        .tx(async |tx| cancel(tx, user, order).await)
        .await?;
    goods::stock_changed(state, &restocked, StockMove::Returned).await;
    if cancelled.lines.is_empty() {
        cancelled.lines = state
            .db
            .run(async |c| store::lines_of(c, &[order]).await)
            .await?
            .into_iter()
            .map(|(_, l)| l)
            .collect();
    }
    Ok(cancelled)
}

/// Cancels a paid order: refund, restock, coupon released. Cancelling a cancelled order
/// returns it unchanged. Like placing, the per-user rows (coupon, wallet) come before the
/// stock rows, so a cancellation cannot deadlock with an order of the same user.
pub async fn cancel(
    conn: &mut PgConnection,
    user: UserId,
    order: OrderId,
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
        let refund = LedgerKind::OrderRefund;
        wallet::credit(conn, user, cancelled.total, refund, Some(order.0)).await?;
    }
    let restocked = store::restock(conn, order).await?;
    cancelled.lines = store::lines_of(&mut *conn, &[order])
        .await?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    Ok((cancelled, restocked))
}
