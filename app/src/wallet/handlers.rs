//! Wallet handlers.

use axum::{
    Json,
    extract::{Query, State},
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ChargeResponse, batch, store, store::LedgerEntry};
use crate::{
    auth::CurrentUser,
    error::{ApiError, ApiResult},
    idempotency::{self, IdempotencyKey},
    pagination::{PageQuery, Paged},
    platform::money::Money,
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct WalletView {
    /// Minor units (KRW has none).
    #[schema(value_type = i64)]
    pub balance: Money,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChargeRequest {
    /// Positive, at most the configured maximum per charge (`FLOODGATE_MAX_CHARGE`).
    #[schema(value_type = i64, example = 50000, minimum = 1)]
    pub amount: Money,
}

/// The signed-in user's balance.
#[utoipa::path(get, path = "/wallet", tag = "wallet", security(("bearer" = [])),
    responses((status = 200, body = WalletView), (status = 401, content_type = "application/problem+json")))]
pub async fn get_wallet(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<WalletView>> {
    Ok(Json(WalletView {
        balance: state
            .db
            .run(async |c| store::balance(c, user.id).await)
            .await?,
    }))
}

/// Add money to the wallet. Send an `Idempotency-Key` so a retried charge is applied once.
#[utoipa::path(post, path = "/wallet/charges", tag = "wallet", security(("bearer" = [])), request_body = ChargeRequest,
    params(("Idempotency-Key" = Option<crate::idempotency::IdempotencyKey>, Header, nullable = false, description = "Replays the first response for a repeated request")),
    responses(
        (status = 201, body = ChargeResponse),
        (status = 409, description = "Key in flight, or balance limit", content_type = "application/problem+json"),
        (status = 422, description = "Amount out of range, or key reused with another body", content_type = "application/problem+json"),
    ))]
pub async fn charge(
    State(state): State<AppState>,
    user: CurrentUser,
    key: Option<IdempotencyKey>,
    Json(req): Json<ChargeRequest>,
) -> ApiResult<Response> {
    let max = state.settings.max_charge;
    if !(Money::new(1)..=Money::new(max)).contains(&req.amount) {
        return Err(ApiError::invalid(
            "amount",
            format!("amount must be between 1 and {max}"),
        ));
    }
    let fp = idempotency::fingerprint("POST /wallet/charges", &req);
    // concurrent charges of one wallet share a transaction (group commit)
    batch::charge(&state, user.id, req.amount, key, fp).await
}

/// The ledger, newest first.
#[utoipa::path(get, path = "/wallet/transactions", tag = "wallet", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<LedgerEntry>), (status = 422, content_type = "application/problem+json")))]
pub async fn transactions(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Paged<LedgerEntry>>> {
    let page = q.parse(20)?;
    let rows = state
        .db
        .run(async |c| store::ledger(c, user.id, page).await)
        .await?;
    Ok(Json(Paged::from_rows(rows, page, |e| e.id)))
}
