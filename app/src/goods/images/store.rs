//! Goods images SQL.

use std::time::Duration;

use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

use crate::{auth::UserId, goods::GoodsId};

/// One image row.
#[derive(Debug, Clone, FromRow)]
pub struct ImageRow {
    pub image_id: Uuid,
    pub goods_id: GoodsId,
    pub content_type: String,
    pub byte_size: i32,
    pub width: i32,
    pub height: i32,
    pub etag: String,
    pub object_key: String,
    pub thumb_key: Option<String>,
    pub thumb_etag: Option<String>,
}

macro_rules! image_columns {
    () => {
        "image_id, goods_id, content_type, byte_size, width, height, etag, object_key, thumb_key, thumb_etag"
    };
}

/// What an upload adds.
pub struct NewImage<'a> {
    pub image_id: Uuid,
    pub goods_id: GoodsId,
    pub content_type: &'a str,
    pub byte_size: i32,
    pub width: i32,
    pub height: i32,
    pub etag: &'a str,
    pub object_key: &'a str,
}

/// Serialises image changes of one goods item (uploads counting, the soft delete removing)
/// for the rest of the transaction, without locking the goods row orders update.
pub async fn lock_goods(conn: &mut PgConnection, goods: GoodsId) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock(hashtext('goods_images'), hashtext($1::text))")
        .bind(goods.0)
        .execute(conn)
        .await
        .map(drop)
}

/// The owner of live goods and how many images they hold.
pub async fn owner_and_count<'e>(
    db: impl PgExecutor<'e>,
    goods: GoodsId,
) -> Result<Option<(UserId, i64)>, sqlx::Error> {
    sqlx::query_as(
        "select g.seller_id, (select count(*) from goods_images i where i.goods_id = g.goods_id)
           from goods g where g.goods_id = $1 and g.deleted_at is null",
    )
    .bind(goods)
    .fetch_optional(db)
    .await
}

pub async fn insert<'e>(
    db: impl PgExecutor<'e>,
    new: &NewImage<'_>,
) -> Result<ImageRow, sqlx::Error> {
    sqlx::query_as(concat!(
        "insert into goods_images (image_id, goods_id, content_type, byte_size, width, height, etag, object_key)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning ",
        image_columns!()
    ))
    .bind(new.image_id)
    .bind(new.goods_id)
    .bind(new.content_type)
    .bind(new.byte_size)
    .bind(new.width)
    .bind(new.height)
    .bind(new.etag)
    .bind(new.object_key)
    .fetch_one(db)
    .await
}

/// One image of live goods.
pub async fn find<'e>(
    db: impl PgExecutor<'e>,
    goods: GoodsId,
    image: Uuid,
) -> Result<Option<ImageRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        image_columns!(),
        " from goods_images where goods_id = $1 and image_id = $2"
    ))
    .bind(goods)
    .bind(image)
    .fetch_optional(db)
    .await
}

/// The images of these goods, oldest first per goods item (one query for a whole page).
pub async fn for_goods<'e>(
    db: impl PgExecutor<'e>,
    goods: &[i64],
) -> Result<Vec<ImageRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        image_columns!(),
        " from goods_images where goods_id = any($1) order by goods_id, created_at, image_id"
    ))
    .bind(goods)
    .fetch_all(db)
    .await
}

/// Deletes every image row of `goods`; returns how many.
pub async fn delete_for_goods<'e>(
    db: impl PgExecutor<'e>,
    goods: GoodsId,
) -> Result<u64, sqlx::Error> {
    sqlx::query("delete from goods_images where goods_id = $1")
        .bind(goods)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}

/// A pending thumbnail a worker has claimed.
#[derive(Debug, FromRow)]
pub struct ThumbJob {
    pub image_id: Uuid,
    pub goods_id: GoodsId,
    pub object_key: String,
    pub content_type: String,
}

/// Claims up to `limit` pending thumbnails nobody else holds (or whose holder went quiet for
/// `stale`); each claim counts an attempt.
pub async fn claim_thumbs<'e>(
    db: impl PgExecutor<'e>,
    limit: i64,
    stale: Duration,
) -> Result<Vec<ThumbJob>, sqlx::Error> {
    sqlx::query_as(
        "update goods_images set thumb_claimed_at = now(), thumb_attempts = thumb_attempts + 1
          where image_id in (
                select image_id from goods_images
                 where thumb_state = 'pending'
                   and (thumb_claimed_at is null or thumb_claimed_at < now() - make_interval(secs => $2))
                 order by created_at limit $1 for update skip locked)
          returning image_id, goods_id, object_key, content_type",
    )
    .bind(limit)
    .bind(stale.as_secs_f64())
    .fetch_all(db)
    .await
}

/// Records a made thumbnail; `None` when the image is gone (its goods were deleted meanwhile).
pub async fn thumb_ready<'e>(
    db: impl PgExecutor<'e>,
    image: Uuid,
    key: &str,
    etag: &str,
) -> Result<Option<GoodsId>, sqlx::Error> {
    sqlx::query_scalar(
        "update goods_images set thumb_state = 'ready', thumb_key = $2, thumb_etag = $3
          where image_id = $1 returning goods_id",
    )
    .bind(image)
    .bind(key)
    .bind(etag)
    .fetch_optional(db)
    .await
}

/// A thumbnail that could not be made: retried by the next claim after `stale`, given up
/// (`failed`) after `max_attempts`, or at once when `give_up`.
pub async fn thumb_failed<'e>(
    db: impl PgExecutor<'e>,
    image: Uuid,
    max_attempts: i32,
    give_up: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update goods_images set thumb_state = 'failed'
          where image_id = $1 and thumb_state = 'pending' and ($3 or thumb_attempts >= $2)",
    )
    .bind(image)
    .bind(max_attempts)
    .bind(give_up)
    .execute(db)
    .await
    .map(drop)
}
