//! Wallets: a balance per user and the ledger that records every change.
//!
//! The ledger is the record; `wallets.balance` is kept equal to its sum in the same
//! statement that appends to it (one conditional `UPDATE … RETURNING` feeding the ledger
//! insert), so no lock is held across a round trip and the balance can never go negative.

mod handlers;
pub mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

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

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::get_wallet))
        .routes(routes!(handlers::charge))
        .routes(routes!(handlers::transactions))
}
