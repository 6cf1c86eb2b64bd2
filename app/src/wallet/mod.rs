//! Wallets: a balance per user and the ledger that records every change.
//!
//! The ledger is the record; `wallets.balance` is kept equal to its sum in the same
//! statement that appends to it (one conditional `UPDATE … RETURNING` feeding the ledger
//! insert), so the balance can never go negative. Charges are group-committed per wallet
//! ([`batch`]): one locked balance, one update and one multi-row ledger insert per batch.

pub mod batch;
pub(crate) mod handlers;
pub mod rules;
pub mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::{
    error::ApiError,
    platform::{api_router::ApiRouter, money::Money},
    state::AppState,
};

// the answer to a charge (also what a replay returns)
#[derive(Serialize, ToSchema)]
pub struct ChargeResponse {
    #[schema(value_type = i64)]
    pub balance: Money,
    pub transaction: store::LedgerEntry,
}

pub fn insufficient_balance(amount: Money) -> ApiError {
    ApiError::conflict(
        "insufficient-balance",
        format!("the wallet balance does not cover {amount}; charge the wallet first"),
    )
}

pub fn balance_limit() -> ApiError {
    ApiError::conflict(
        "balance-limit",
        "this charge would exceed the largest balance a wallet may hold",
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Charge,
    OrderPayment,
    OrderRefund,
    SeatPayment,
    SeatRefund,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "charge",
            Self::OrderPayment => "order_payment",
            Self::OrderRefund => "order_refund",
            Self::SeatPayment => "seat_payment",
            Self::SeatRefund => "seat_refund",
        }
    }
}

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::get_wallet))
        .routes(routes!(handlers::charge))
        .routes(routes!(handlers::transactions))
}
