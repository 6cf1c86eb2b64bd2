//! The virtual waiting room: joining (signed tokens naming queue, user and position), the
//! admission loop (one per queue cluster-wide, under a Redis lease), sessions, abandonment,
//! passes for queue-protected endpoints, metrics and the waiting-room page.
//!
//! Every knob is read live from the runtime config (`QueueSettings`). Layout and memory per
//! waiting user: see [`store`]. Which queues exist (configured or referenced; a join to any
//! other id is a 404): see [`registry`].

pub mod admission;
pub(crate) mod handlers;
pub mod lease;
mod page;
pub mod pass;
pub mod registry;
pub mod rules;
pub mod service;
pub mod store;
pub mod types;

pub use pass::{PassCheck, QueueToken};
pub use service::{QueuePass, check_pass_ahead, end_session, require_pass};
pub use types::QueueId;

use axum::{Router, routing::get};
use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().routes(routes!(handlers::show))
}

/// The writes that need only Redis (a token is joined, read and left in Redis alone): they
/// keep working while PostgreSQL's breaker is open.
pub fn redis_only_routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::join))
        .routes(routes!(handlers::me, handlers::leave))
}

/// The browser page, outside `/api/v1`.
pub fn page_routes() -> Router<AppState> {
    Router::new().route("/waiting-room/{queue_id}", get(page::waiting_room))
}
