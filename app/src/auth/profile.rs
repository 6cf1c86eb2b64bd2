//! The signed-in user's profile and becoming a seller: `/users/me`, served here because it
//! needs the signed-in user ([`CurrentUser`]); the accounts themselves are [`crate::users`].

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::{
    auth::CurrentUser,
    error::{ApiError, ApiResult},
    platform::api_router::ApiRouter,
    state::AppState,
    users::{Role, UserView, store, types::parse_name},
};

#[derive(Deserialize, ToSchema)]
pub struct BecomeSellerRequest {
    /// 1-100 characters after trimming, no control characters.
    #[schema(example = "Kim's Goods", min_length = 1, max_length = 100)]
    pub display_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct BecomeSellerResponse {
    pub user: UserView,
    /// A fresh access token carrying the new role (the old one still says customer).
    pub access_token: String,
}

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(become_seller))
}

/// The signed-in user's profile and roles.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, content_type = "application/problem+json")))]
pub async fn me(State(state): State<AppState>, user: CurrentUser) -> ApiResult<Json<UserView>> {
    let row = state
        .db
        .run(async |c| store::by_id(c, user.id).await)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(row.into()))
}

/// Register as a seller (idempotent; the display name is updated on repeat).
#[utoipa::path(post, path = "/users/me/seller", tag = "users", security(("bearer" = [])), request_body = BecomeSellerRequest,
    responses((status = 200, body = BecomeSellerResponse), (status = 422, content_type = "application/problem+json")))]
pub async fn become_seller(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<BecomeSellerRequest>,
) -> ApiResult<Json<BecomeSellerResponse>> {
    let display_name = parse_name(&req.display_name, "display_name")
        .map_err(|m| ApiError::invalid("display_name", m))?;
    let row = state
        .db
        .tx(async |tx| {
            let row = store::grant_role(&mut *tx, user.id, Role::Seller)
                .await?
                .ok_or_else(|| ApiError::not_found("user"))?;
            sqlx::query(
                "insert into sellers (user_id, display_name) values ($1, $2)
                 on conflict (user_id) do update set display_name = excluded.display_name",
            )
            .bind(user.id)
            .bind(&display_name)
            .execute(&mut *tx)
            .await?;
            Ok::<_, ApiError>(row)
        })
        .await?;
    let access_token = state
        .jwt
        .issue(row.user_id, &row.roles())
        .map_err(ApiError::internal)?;
    Ok(Json(BecomeSellerResponse {
        user: row.into(),
        access_token,
    }))
}
