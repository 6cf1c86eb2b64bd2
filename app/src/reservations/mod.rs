//! Reservations: seat holds (one conditional write, TTL from the runtime config) and their
//! payment (Idempotency-Key, one transaction, wallet debit, seat sold, queue session ended).

pub(crate) mod handlers;
pub mod rules;
pub mod service;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::hold))
        .routes(routes!(handlers::get))
        .routes(routes!(handlers::pay))
}
