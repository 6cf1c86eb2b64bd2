//! Orders paid from the wallet, without oversell: stock is taken with conditional updates in
//! the same transaction as the wallet debit, the ledger row, the order and its lines, and the
//! coupon; cancellation refunds, restocks and releases the coupon. Flash-sale orders of one
//! goods item are group-committed per item ([`batch`]).

pub mod batch;
pub mod flash;
pub(crate) mod handlers;
pub mod request;
pub mod rules;
pub mod service;
pub mod store;

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::detail))
        .routes(routes!(handlers::cancel))
}
