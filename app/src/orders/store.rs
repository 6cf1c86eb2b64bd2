//! Order SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use utoipa::ToSchema;

use super::flash::LockedGoods;
use crate::{
    auth::UserId,
    error::ApiError,
    goods::GoodsId,
    idempotency::IdempotencyKey,
    pagination::Page,
    platform::{
        db::PlannedPerBatch,
        ids::{CouponId, OrderId},
        money::Money,
    },
};

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct OrderLine {
    pub goods_id: GoodsId,
    pub quantity: i32,
    #[schema(value_type = i64)]
    pub unit_price: Money,
}

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct OrderView {
    #[sqlx(rename = "order_id")]
    pub id: OrderId,
    /// `paid` or `cancelled`.
    pub status: String,
    #[schema(value_type = i64)]
    pub subtotal: Money,
    #[schema(value_type = i64)]
    pub discount: Money,
    #[schema(value_type = i64)]
    pub total: Money,
    pub coupon_id: Option<CouponId>,
    pub created_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    #[sqlx(skip)]
    pub lines: Vec<OrderLine>,
}

macro_rules! order_columns {
    () => {
        "order_id, status, subtotal, discount, total, coupon_id, created_at, cancelled_at"
    };
}

/// The order row of the single-order path, with the Idempotency-Key it is placed under (what
/// the sold-out gate lets through: `goods::soldout::members`).
pub async fn insert(
    conn: &mut PgConnection,
    user: UserId,
    key: Option<&IdempotencyKey>,
    subtotal: Money,
    discount: Money,
    coupon: Option<CouponId>,
) -> Result<OrderView, sqlx::Error> {
    sqlx::query_as(concat!(
        "insert into orders (user_id, subtotal, discount, total, coupon_id, idempotency_key)
         values ($1, $2, $3, $2 - $3, $4, $5) returning ",
        order_columns!()
    ))
    .bind(user)
    .bind(subtotal)
    .bind(discount)
    .bind(coupon)
    .bind(key.map(IdempotencyKey::as_str))
    .fetch_one(conn)
    .await
}

pub async fn insert_lines(
    conn: &mut PgConnection,
    order: OrderId,
    lines: &[OrderLine],
) -> Result<(), sqlx::Error> {
    let goods: Vec<i64> = lines.iter().map(|l| l.goods_id.0).collect();
    let qty: Vec<i32> = lines.iter().map(|l| l.quantity).collect();
    let price: Vec<Money> = lines.iter().map(|l| l.unit_price).collect();
    sqlx::query(
        "insert into order_lines (order_id, goods_id, quantity, unit_price)
         select $1, g, q, p from unnest($2::bigint[], $3::int[], $4::bigint[]) as t(g, q, p)",
    )
    .bind(order)
    .bind(&goods)
    .bind(&qty)
    .bind(&price)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Takes `qty` of the goods if that much is left and the price is still `price`; returns
/// whether it did. The row lock this takes is held only until the commit that follows.
pub async fn take_stock(
    conn: &mut PgConnection,
    goods: GoodsId,
    qty: i32,
    price: Money,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "update goods set stock = stock - $2
          where goods_id = $1 and stock >= $2 and price = $3 and deleted_at is null",
    )
    .bind(goods)
    .bind(qty)
    .bind(price)
    .execute(conn)
    .await
    .map(|r| r.rows_affected() == 1)
}

/// The stock and price of goods not deleted: why a [`take_stock`] matched nothing.
pub async fn stock_and_price(
    conn: &mut PgConnection,
    goods: GoodsId,
) -> Result<Option<(i32, Money)>, sqlx::Error> {
    sqlx::query_as("select stock, price from goods where goods_id = $1 and deleted_at is null")
        .bind(goods)
        .fetch_optional(conn)
        .await
}

/// The goods row of a group-commit batch, locked. It is the hot row: callers lock it last,
/// after every per-user row.
pub async fn lock_goods(
    conn: &mut PgConnection,
    goods: GoodsId,
) -> Result<Option<LockedGoods>, sqlx::Error> {
    sqlx::query_as(
        "select price, stock, sale_starts_at, queue_id from goods
          where goods_id = $1 and deleted_at is null for no key update",
    )
    .bind(goods)
    .fetch_optional(conn)
    .await
}

/// One paid single-line order of a batch.
pub struct PaidOrder<'a> {
    pub user: UserId,
    pub key: Option<&'a IdempotencyKey>,
    pub quantity: i32,
    pub total: Money,
}

/// What [`insert_paid`] wrote.
pub struct Written {
    pub orders: Vec<(UserId, OrderView)>,
    pub stock_left: i32,
}

/// Writes a batch's paid orders for one goods item in one statement: the orders and their
/// lines, and the stock taken once for all (the debits are the wallet's:
/// `wallet::store::debit_many`). The caller holds the locks (wallets, then the goods row) and
/// has checked the stock; users are distinct. Counts are verified so a mismatch rolls the
/// batch back.
pub async fn insert_paid(
    conn: &mut PgConnection,
    goods: GoodsId,
    price: Money,
    paid: &[PaidOrder<'_>],
) -> Result<Written, ApiError> {
    #[derive(FromRow)]
    struct Row {
        user_id: UserId,
        #[sqlx(flatten)]
        order: OrderView,
        lines: i64,
        stock_left: Option<i32>,
    }
    let users: Vec<UserId> = paid.iter().map(|p| p.user).collect();
    let qty: Vec<i32> = paid.iter().map(|p| p.quantity).collect();
    let totals: Vec<Money> = paid.iter().map(|p| p.total).collect();
    let keys: Vec<Option<&str>> = paid.iter().map(|p| p.key.map(|k| k.as_str())).collect();
    let units: i32 = qty.iter().sum();
    let rows: Vec<Row> = sqlx::query_as(concat!(
        "with req as (
            select * from unnest($3::bigint[], $4::int[], $5::bigint[], $7::text[])
                       as t(user_id, quantity, total, idempotency_key)
         ), o as (
            insert into orders (user_id, subtotal, discount, total, idempotency_key)
            select user_id, total, 0, total, idempotency_key from req
            returning user_id, ",
        order_columns!(),
        "), l as (
            insert into order_lines (order_id, goods_id, quantity, unit_price)
            select o.order_id, $1, req.quantity, $2 from o join req using (user_id)
            returning 1
         ), g as (
            update goods set stock = stock - $6 where goods_id = $1 returning stock
         )
         select o.*, (select count(*) from l) as lines, (select stock from g) as stock_left
           from o"
    ))
    .bind(goods)
    .bind(price)
    .bind(&users)
    .bind(&qty)
    .bind(&totals)
    .bind(units)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    let stock_left = rows.first().and_then(|r| r.stock_left);
    match (rows.first(), stock_left) {
        (Some(r), Some(left)) if rows.len() == paid.len() && r.lines == rows.len() as i64 => {
            Ok(Written {
                orders: rows.into_iter().map(|r| (r.user_id, r.order)).collect(),
                stock_left: left,
            })
        }
        _ => Err(ApiError::internal(format!(
            "batch of {} orders for goods {} was written incompletely",
            paid.len(),
            goods.0
        ))),
    }
}

pub async fn restock(conn: &mut PgConnection, order: OrderId) -> Result<Vec<GoodsId>, sqlx::Error> {
    // lock the stock rows in goods-id order first, like every other multi-row stock change:
    // one update joining the lines would lock them in whatever order its plan visits them,
    // and deadlock with an order taking the same goods
    let goods: Vec<GoodsId> = sqlx::query_scalar(
        "select goods_id from goods
          where goods_id in (select goods_id from order_lines where order_id = $1)
          order by goods_id for no key update",
    )
    .bind(order)
    .fetch_all(&mut *conn)
    .await?;
    if goods.is_empty() {
        return Ok(goods);
    }
    sqlx::query_scalar(
        "update goods g set stock = g.stock + l.quantity from order_lines l
          where l.order_id = $1 and g.goods_id = l.goods_id returning g.goods_id",
    )
    .bind(order)
    .fetch_all(conn)
    .await
}

pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    order: OrderId,
) -> Result<Option<OrderView>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        order_columns!(),
        " from orders where order_id = $1 and user_id = $2"
    ))
    .bind(order)
    .bind(user)
    .fetch_optional(db)
    .await
}

pub async fn lines_of<'e>(
    db: impl PgExecutor<'e>,
    orders: &[OrderId],
) -> Result<Vec<(OrderId, OrderLine)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        order_id: OrderId,
        #[sqlx(flatten)]
        line: OrderLine,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "select order_id, goods_id, quantity, unit_price from order_lines where order_id = any($1) order by order_id, goods_id",
    )
    .bind(orders)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.order_id, r.line)).collect())
}

pub async fn page<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    page: Page,
) -> Result<Vec<OrderView>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        order_columns!(),
        " from orders where user_id = $1 and ($2::bigint is null or order_id < $2) order by order_id desc limit $3"
    ))
    .bind(user)
    .bind(page.before)
    .bind(page.limit + 1)
    .fetch_all(db)
    .await
}

/// Marks a paid order cancelled; None if it is not a paid order of this user.
pub async fn mark_cancelled(
    conn: &mut PgConnection,
    user: UserId,
    order: OrderId,
) -> Result<Option<OrderView>, sqlx::Error> {
    sqlx::query_as(concat!(
        "update orders set status = 'cancelled', cancelled_at = now()
          where order_id = $1 and user_id = $2 and status = 'paid' returning ",
        order_columns!()
    ))
    .bind(order)
    .bind(user)
    .fetch_optional(conn)
    .await
}

/// The orders that these admitted sessions of `queue` already paid for, by user (one session
/// per user here: a batch holds one order per user).
pub async fn pass_orders(
    conn: &mut PgConnection,
    queue: &str,
    sessions: &[(UserId, i64)],
) -> Result<std::collections::HashMap<UserId, OrderId>, sqlx::Error> {
    let users: Vec<UserId> = sessions.iter().map(|(u, _)| *u).collect();
    let ends: Vec<i64> = sessions.iter().map(|(_, s)| *s).collect();
    let rows: Vec<(UserId, OrderId)> = sqlx::query_as(
        "select q.user_id, q.order_id from queue_pass_orders q
           join unnest($2::bigint[], $3::bigint[]) as t(u, s)
             on q.user_id = t.u and q.session_expires_ms = t.s
          where q.queue_id = $1",
    )
    .planned_per_batch()
    .bind(queue)
    .bind(&users)
    .bind(&ends)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Records that admitted sessions of `queue` paid for orders `(user, session, order)`;
/// returns how many were recorded (a session that already paid is left as it was). Rows go
/// in user order, like every per-user lock.
pub async fn record_pass_orders(
    conn: &mut PgConnection,
    queue: &str,
    uses: &[(UserId, i64, OrderId)],
) -> Result<u64, sqlx::Error> {
    let users: Vec<UserId> = uses.iter().map(|u| u.0).collect();
    let ends: Vec<i64> = uses.iter().map(|u| u.1).collect();
    let orders: Vec<OrderId> = uses.iter().map(|u| u.2).collect();
    sqlx::query(
        "insert into queue_pass_orders (queue_id, user_id, session_expires_ms, order_id)
         select $1, u, s, o from unnest($2::bigint[], $3::bigint[], $4::bigint[]) as t(u, s, o)
          order by u
         on conflict do nothing",
    )
    .bind(queue)
    .bind(&users)
    .bind(&ends)
    .bind(&orders)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

/// The single-order path: records that the session paid for `order`, or returns the order it
/// had already paid for. A concurrent order with the same session waits for this one.
pub async fn use_pass(
    conn: &mut PgConnection,
    queue: &str,
    user: UserId,
    session: i64,
    order: OrderId,
) -> Result<Option<OrderId>, sqlx::Error> {
    if record_pass_orders(&mut *conn, queue, &[(user, session, order)]).await? == 1 {
        return Ok(None);
    }
    Ok(pass_orders(conn, queue, &[(user, session)])
        .await?
        .remove(&user))
}
