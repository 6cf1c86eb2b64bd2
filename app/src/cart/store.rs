//! Cart SQL.

use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use utoipa::ToSchema;

use crate::{auth::UserId, goods::GoodsId, platform::money::Money};

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct CartRow {
    pub goods_id: GoodsId,
    pub name: String,
    pub quantity: i32,
    /// Current price (minor units).
    #[schema(value_type = i64)]
    pub price: Money,
    pub stock: i32,
    pub deleted: bool,
}

pub async fn rows<'e>(db: impl PgExecutor<'e>, user: UserId) -> Result<Vec<CartRow>, sqlx::Error> {
    sqlx::query_as(
        "select c.goods_id, g.name, c.quantity, g.price, g.stock, g.deleted_at is not null as deleted
           from cart_items c join goods g using (goods_id)
          where c.user_id = $1 order by c.added_at, c.goods_id",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// `(goods_id, quantity)` pairs of the live goods in the cart, for an order.
pub async fn lines<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "select c.goods_id, c.quantity::bigint from cart_items c join goods g using (goods_id)
          where c.user_id = $1 and g.deleted_at is null",
    )
    .bind(user)
    .fetch_all(db)
    .await
}

/// Sets the quantity if the goods exist and are live; false otherwise.
pub async fn set<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
    goods: GoodsId,
    quantity: i32,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "insert into cart_items (user_id, goods_id, quantity)
         select $1, goods_id, $3 from goods where goods_id = $2 and deleted_at is null
         on conflict (user_id, goods_id) do update set quantity = excluded.quantity",
    )
    .bind(user)
    .bind(goods)
    .bind(quantity)
    .execute(db)
    .await
    .map(|r| r.rows_affected() == 1)
}

pub async fn remove(
    conn: &mut PgConnection,
    user: UserId,
    goods: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query("delete from cart_items where user_id = $1 and goods_id = any($2)")
        .bind(user)
        .bind(goods)
        .execute(conn)
        .await
        .map(|_| ())
}
