//! Coupon handlers.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    campaign::{CreateCampaign, NewCampaign},
    service::{self, Issue},
    store::{self, Campaign, CouponView},
};
use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, ApiResult},
    platform::ids::CampaignId,
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct CampaignView {
    #[serde(flatten)]
    pub campaign: Campaign,
    /// Coupons granted so far (Redis's count: persisted ones plus grants being written).
    pub issued: i64,
}

#[derive(Serialize, ToSchema)]
pub struct IssuedView {
    pub campaign_id: CampaignId,
    pub status: &'static str,
}

/// Create a first-come-first-served coupon campaign (admins only).
#[utoipa::path(post, path = "/coupon-campaigns", tag = "coupons", security(("bearer" = ["admin"])), request_body = CreateCampaign,
    responses((status = 201, body = CampaignView), (status = 403, content_type = "application/problem+json"), (status = 422, content_type = "application/problem+json")))]
pub async fn create_campaign(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<CreateCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    user.require(Role::Admin)?;
    let new = NewCampaign::parse(req)?;
    let c = state
        .db
        .run(async |conn| store::insert_campaign(conn, &new).await)
        .await?;
    state.coupon_campaigns.remember_known(c.id);
    // load it now so the first issue does not pay for it; a failure here is retried lazily
    if let Err(e) = service::load(&state, c.id).await {
        tracing::warn!(error = %e, campaign = c.id.0, "campaign not loaded into redis yet");
    }
    Ok((
        StatusCode::CREATED,
        Json(CampaignView {
            campaign: c,
            issued: 0,
        }),
    ))
}

/// A campaign with its live count.
#[utoipa::path(get, path = "/coupon-campaigns/{id}", tag = "coupons", params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 404, content_type = "application/problem+json")))]
pub async fn get_campaign(
    State(state): State<AppState>,
    Path(id): Path<CampaignId>,
) -> ApiResult<Json<CampaignView>> {
    let c = state
        .db
        .run(async |conn| store::campaign(conn, id).await)
        .await?
        .ok_or_else(|| ApiError::not_found("coupon campaign"))?;
    let issued = service::issued_count(&state, id)
        .await
        .unwrap_or(i64::from(c.persisted))
        .max(i64::from(c.persisted));
    Ok(Json(CampaignView {
        campaign: c,
        issued,
    }))
}

/// Try to get a coupon: first come, first served, one per user. A 201 means the coupon is
/// persisted.
#[utoipa::path(post, path = "/coupon-campaigns/{id}/issue", tag = "coupons", security(("bearer" = [])), params(("id" = i64, Path)),
    responses(
        (status = 201, description = "issued and persisted", body = IssuedView),
        (status = 404, description = "no such coupon campaign", content_type = "application/problem+json"),
        (status = 409, description = "already-issued or not-started", content_type = "application/problem+json"),
        (status = 410, description = "sold-out or campaign-ended", content_type = "application/problem+json"),
        (status = 503, description = "Redis or PostgreSQL unavailable, or the campaign is being reloaded; retry (Retry-After)", content_type = "application/problem+json"),
    ))]
pub async fn issue(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<CampaignId>,
) -> ApiResult<(StatusCode, Json<IssuedView>)> {
    if id.0 <= 0 {
        return Err(ApiError::not_found("coupon campaign"));
    }
    match service::issue(&state, id, user.id).await? {
        Issue::Issued => Ok((
            StatusCode::CREATED,
            Json(IssuedView {
                campaign_id: id,
                status: "issued",
            }),
        )),
        Issue::AlreadyHolds => Err(ApiError::conflict(
            "already-issued",
            "you already hold a coupon of this campaign",
        )),
        Issue::NotStarted => Err(ApiError::conflict(
            "not-started",
            "this campaign has not started yet",
        )),
        Issue::Ended => Err(ApiError::gone("campaign-ended", "this campaign has ended")),
        Issue::SoldOut => Err(ApiError::gone(
            "sold-out",
            "all coupons of this campaign are gone",
        )),
    }
}

/// Reload a campaign's counters from PostgreSQL (admins; after a Redis incident).
#[utoipa::path(post, path = "/coupon-campaigns/{id}/rebuild", tag = "coupons", security(("bearer" = ["admin"])), params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 404, content_type = "application/problem+json"),
        (status = 503, description = "Redis or PostgreSQL unavailable (circuit open); retry (Retry-After)", content_type = "application/problem+json")))]
pub async fn rebuild(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<CampaignId>,
) -> ApiResult<Json<CampaignView>> {
    user.require(Role::Admin)?;
    if !service::rebuild(&state, id).await? {
        return Err(ApiError::not_found("coupon campaign"));
    }
    get_campaign(State(state), Path(id)).await
}

/// Own coupons. Every coupon answered 201 is here: it was persisted before the answer.
#[utoipa::path(get, path = "/coupons", tag = "coupons", security(("bearer" = [])), responses((status = 200, body = Vec<CouponView>)))]
pub async fn my_coupons(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<Vec<CouponView>>> {
    let coupons = state
        .db
        .run(async |c| store::of_user(c, user.id).await)
        .await?;
    Ok(Json(coupons))
}
