//! Reservations: seat holds (one conditional write, TTL from the runtime config) and their
//! payment (Idempotency-Key, one transaction, wallet debit, seat sold, queue session ended).

pub(crate) mod handlers;
pub mod rules;
pub mod service;

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::hold))
        .routes(routes!(handlers::get))
        .routes(routes!(handlers::pay))
}
