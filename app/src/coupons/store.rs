//! Coupon SQL.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgExecutor};
use utoipa::ToSchema;

use super::{campaign::NewCampaign, rules::Discount};
use crate::{
    auth::UserId,
    error::ApiError,
    platform::{
        db::PlannedPerBatch,
        ids::{CampaignId, CouponId, OrderId},
        money::Money,
    },
};

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Campaign {
    #[sqlx(rename = "campaign_id")]
    pub id: CampaignId,
    pub name: String,
    #[schema(value_type = Option<i64>)]
    pub discount_amount: Option<Money>,
    pub discount_percent: Option<i32>,
    pub total_quantity: i32,
    pub per_user_limit: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Coupons persisted in PostgreSQL so far.
    #[sqlx(rename = "issued")]
    pub persisted: i32,
    pub created_at: DateTime<Utc>,
}

macro_rules! campaign_columns {
    () => {
        "campaign_id, name, discount_amount, discount_percent, total_quantity, per_user_limit, starts_at, ends_at, issued, created_at"
    };
}

pub async fn insert_campaign<'e>(
    db: impl PgExecutor<'e>,
    c: &NewCampaign,
) -> Result<Campaign, sqlx::Error> {
    sqlx::query_as(concat!(
        "insert into coupon_campaigns (name, discount_amount, discount_percent, total_quantity, starts_at, ends_at)
         values ($1, $2, $3, $4, $5, $6) returning ",
        campaign_columns!()
    ))
    .bind(c.name())
    .bind(c.discount_amount())
    .bind(c.discount_percent())
    .bind(c.total_quantity())
    .bind(c.starts_at())
    .bind(c.ends_at())
    .fetch_one(db)
    .await
}

pub async fn campaign<'e>(
    db: impl PgExecutor<'e>,
    id: CampaignId,
) -> Result<Option<Campaign>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        campaign_columns!(),
        " from coupon_campaigns where campaign_id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Campaigns whose grants may still be arriving: running, or ended less than a day ago.
pub async fn live_campaigns<'e>(db: impl PgExecutor<'e>) -> Result<Vec<Campaign>, sqlx::Error> {
    sqlx::query_as(concat!(
        "select ",
        campaign_columns!(),
        " from coupon_campaigns where ends_at > now() - interval '1 day' order by campaign_id"
    ))
    .fetch_all(db)
    .await
}

pub async fn holders<'e>(
    db: impl PgExecutor<'e>,
    campaign: CampaignId,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("select user_id from coupons where campaign_id = $1")
        .bind(campaign)
        .fetch_all(db)
        .await
}

/// Locks the campaign row for a grant batch; returns the room left (total - issued), or
/// `None` if the campaign does not exist. Every writer of a campaign's coupons takes this lock
/// first, so the batch's view of the holders cannot change under it.
pub async fn lock_room(
    conn: &mut PgConnection,
    campaign: CampaignId,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select (total_quantity - issued)::bigint from coupon_campaigns where campaign_id = $1 for update",
    )
    .bind(campaign)
    .fetch_optional(conn)
    .await
}

/// The users among `users` who already hold a coupon of `campaign`.
pub async fn holders_among(
    conn: &mut PgConnection,
    campaign: CampaignId,
    users: &[i64],
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("select user_id from coupons where campaign_id = $1 and user_id = any($2)")
        .planned_per_batch()
        .bind(campaign)
        .bind(users)
        .fetch_all(conn)
        .await
}

/// Writes granted coupons `(user, issued_at)` and counts them on the campaign row, in one
/// statement; returns how many rows were inserted. The caller planned them under
/// [`lock_room`]: the unique (campaign, user) constraint and the `issued` check constraint
/// stay the last word.
pub async fn insert_grants(
    conn: &mut PgConnection,
    campaign: CampaignId,
    users: &[i64],
    at: &[DateTime<Utc>],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "with ins as (
            insert into coupons (campaign_id, user_id, issued_at)
            select $1, u, t from unnest($2::bigint[], $3::timestamptz[]) as x(u, t)
            on conflict (campaign_id, user_id) do nothing
            returning 1),
         upd as (update coupon_campaigns set issued = issued + (select count(*) from ins) where campaign_id = $1)
         select count(*) from ins",
    )
    .bind(campaign)
    .bind(users)
    .bind(at)
    .fetch_one(conn)
    .await
}

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct CouponView {
    /// Always set: a coupon is answered 201 only once its row exists (kept optional for
    /// clients of the earlier contract, where unpersisted grants were listed).
    pub coupon_id: Option<CouponId>,
    pub campaign_id: CampaignId,
    pub name: String,
    #[schema(value_type = Option<i64>)]
    pub discount_amount: Option<Money>,
    pub discount_percent: Option<i32>,
    pub issued_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub order_id: Option<OrderId>,
    /// Always true (see `coupon_id`).
    #[sqlx(skip)]
    pub persisted: bool,
}

pub async fn of_user<'e>(
    db: impl PgExecutor<'e>,
    user: UserId,
) -> Result<Vec<CouponView>, sqlx::Error> {
    let mut rows: Vec<CouponView> = sqlx::query_as(
        "select c.coupon_id, c.campaign_id, k.name, k.discount_amount, k.discount_percent, c.issued_at, c.used_at, c.order_id
           from coupons c join coupon_campaigns k using (campaign_id)
          where c.user_id = $1 order by c.coupon_id desc",
    )
    .bind(user)
    .fetch_all(db)
    .await?;
    for r in &mut rows {
        r.persisted = true;
    }
    Ok(rows)
}

/// Locks an unused coupon of `user` for an order; returns its discount.
pub async fn lock_unused(
    conn: &mut PgConnection,
    user: UserId,
    coupon: CouponId,
) -> Result<Discount, ApiError> {
    #[derive(FromRow)]
    struct Row {
        discount_amount: Option<Money>,
        discount_percent: Option<i32>,
        used_at: Option<DateTime<Utc>>,
    }
    let row: Option<Row> = sqlx::query_as(
        "select k.discount_amount, k.discount_percent, c.used_at
           from coupons c join coupon_campaigns k using (campaign_id)
          where c.coupon_id = $1 and c.user_id = $2 for update of c",
    )
    .bind(coupon)
    .bind(user)
    .fetch_optional(conn)
    .await?;
    match row {
        None => Err(ApiError::not_found("coupon")),
        Some(Row {
            used_at: Some(_), ..
        }) => Err(ApiError::conflict(
            "coupon-unavailable",
            "this coupon was already used",
        )),
        Some(Row {
            discount_amount,
            discount_percent,
            used_at: None,
        }) => Discount::of_campaign(discount_amount, discount_percent)
            .ok_or_else(|| ApiError::internal("coupon campaign without a discount")),
    }
}

pub async fn mark_used(
    conn: &mut PgConnection,
    coupon: CouponId,
    order: OrderId,
) -> Result<(), sqlx::Error> {
    sqlx::query("update coupons set used_at = now(), order_id = $2 where coupon_id = $1")
        .bind(coupon)
        .bind(order)
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn release(conn: &mut PgConnection, coupon: CouponId) -> Result<(), sqlx::Error> {
    sqlx::query("update coupons set used_at = null, order_id = null where coupon_id = $1")
        .bind(coupon)
        .execute(conn)
        .await
        .map(|_| ())
}
