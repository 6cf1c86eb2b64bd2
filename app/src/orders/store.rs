//! Order SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use utoipa::ToSchema;

use crate::{auth::UserId, goods::GoodsId, pagination::Page};

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct OrderLine {
    pub goods_id: GoodsId,
    pub quantity: i32,
    pub unit_price: i64,
}

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct OrderView {
    #[sqlx(rename = "order_id")]
    pub id: i64,
    /// `paid` or `cancelled`.
    pub status: String,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub coupon_id: Option<i64>,
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

pub async fn insert(
    conn: &mut PgConnection,
    user: UserId,
    subtotal: i64,
    discount: i64,
    coupon: Option<i64>,
) -> Result<OrderView, sqlx::Error> {
    sqlx::query_as(concat!(
        "insert into orders (user_id, subtotal, discount, total, coupon_id) values ($1, $2, $3, $2 - $3, $4) returning ",
        order_columns!()
    ))
    .bind(user)
    .bind(subtotal)
    .bind(discount)
    .bind(coupon)
    .fetch_one(conn)
    .await
}

pub async fn insert_lines(
    conn: &mut PgConnection,
    order: i64,
    lines: &[OrderLine],
) -> Result<(), sqlx::Error> {
    let goods: Vec<i64> = lines.iter().map(|l| l.goods_id.0).collect();
    let qty: Vec<i32> = lines.iter().map(|l| l.quantity).collect();
    let price: Vec<i64> = lines.iter().map(|l| l.unit_price).collect();
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
    price: i64,
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

pub async fn restock(conn: &mut PgConnection, order: i64) -> Result<Vec<GoodsId>, sqlx::Error> {
    // goods-id order, like every other multi-row stock change, so it cannot deadlock
    sqlx::query_scalar(
        "with l as (select goods_id, quantity from order_lines where order_id = $1 order by goods_id for update)
         update goods g set stock = g.stock + l.quantity from l where g.goods_id = l.goods_id returning g.goods_id",
    )
    .bind(order)
    .fetch_all(conn)
    .await
}

pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    order: i64,
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
    orders: &[i64],
) -> Result<Vec<(i64, OrderLine)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Row {
        order_id: i64,
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
    order: i64,
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
