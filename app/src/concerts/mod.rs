//! Concerts, schedules and seats: admin creation (seats in bulk) and the two hot, cached
//! reads. Holds and payments live in `reservations`; the hold sweeper lives here because it
//! frees seats.

pub mod cache;
mod handlers;
pub mod store;
pub mod sweeper;
pub mod types;

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::create_concert, handlers::list_concerts))
        .routes(routes!(handlers::create_schedule, handlers::list_schedules))
        .routes(routes!(handlers::create_seats, handlers::list_seats))
}
