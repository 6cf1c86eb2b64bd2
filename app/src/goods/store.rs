//! Goods SQL.

use sqlx::{PgConnection, PgExecutor, Postgres, postgres::PgArguments, query::QueryAs};

use super::model::{GoodsId, GoodsView, ValidGoods};
use crate::{auth::UserId, pagination::Page};

macro_rules! goods_columns {
    () => {
        "goods_id, seller_id, name, description, price, stock, category, image_url, sale_starts_at, queue_id, created_at, updated_at"
    };
}

type Query<'q, O> = QueryAs<'q, Postgres, O, PgArguments>;

/// Binds the columns a seller sets, in table order, after the parameters already bound.
fn bind_fields<'q, O>(query: Query<'q, O>, g: &'q ValidGoods) -> Query<'q, O> {
    query
        .bind(&g.name)
        .bind(&g.description)
        .bind(g.price)
        // validated within MAX_STOCK, which fits the int column
        .bind(g.stock as i32)
        .bind(&g.category)
        .bind(&g.image_url)
        .bind(g.sale_starts_at)
        .bind(&g.queue_id)
}

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    seller: UserId,
    g: &ValidGoods,
) -> Result<GoodsView, sqlx::Error> {
    let query = sqlx::query_as(concat!(
        "insert into goods (seller_id, name, description, price, stock, category, image_url, sale_starts_at, queue_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning ",
        goods_columns!()
    ))
    .bind(seller);
    bind_fields(query, g).fetch_one(db).await
}

/// Replaces the goods if `seller` owns them and they are not deleted.
pub async fn update<'e>(
    db: impl PgExecutor<'e>,
    id: GoodsId,
    seller: UserId,
    g: &ValidGoods,
) -> Result<Option<GoodsView>, sqlx::Error> {
    let query = sqlx::query_as(concat!(
        "update goods set name = $3, description = $4, price = $5, stock = $6, category = $7, image_url = $8,
                sale_starts_at = $9, queue_id = $10
          where goods_id = $1 and seller_id = $2 and deleted_at is null returning ",
        goods_columns!()
    ))
    .bind(id)
    .bind(seller);
    bind_fields(query, g).fetch_optional(db).await
}

pub async fn soft_delete<'e>(
    db: impl PgExecutor<'e>,
    id: GoodsId,
    seller: UserId,
) -> Result<bool, sqlx::Error> {
    sqlx::query("update goods set deleted_at = now() where goods_id = $1 and seller_id = $2 and deleted_at is null")
        .bind(id)
        .bind(seller)
        .execute(db)
        .await
        .map(|r| r.rows_affected() == 1)
}

/// The owner of live goods, to tell 403 from 404 after a refused update.
pub async fn owner<'e>(
    db: impl PgExecutor<'e>,
    id: GoodsId,
) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query_scalar("select seller_id from goods where goods_id = $1 and deleted_at is null")
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    id: GoodsId,
) -> Result<Option<GoodsView>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        goods_columns!(),
        " from goods where goods_id = $1 and deleted_at is null"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub async fn page<'e>(db: impl PgExecutor<'e>, page: Page) -> Result<Vec<GoodsView>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        goods_columns!(),
        " from goods where deleted_at is null and ($1::bigint is null or goods_id < $1)
          order by goods_id desc limit $2"
    ))
    .bind(page.before)
    .bind(page.limit + 1)
    .fetch_all(db)
    .await
}

/// Live goods by id, for orders and carts (one query, no N+1).
pub async fn many(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<GoodsView>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        goods_columns!(),
        " from goods where goods_id = any($1) and deleted_at is null"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}
