//! First-come-first-served coupons.
//!
//! One Lua script decides each issue atomically in Redis (window open, user not a holder yet,
//! fewer holders than the total): Redis is the fast gate, and its rejections (sold out,
//! duplicate, outside the window) need nothing else. A grant it accepts is written to
//! PostgreSQL through a per-campaign group commit before the caller hears 201; PostgreSQL
//! (row lock on the campaign, unique (campaign, user), a cap check) has the last word, so a
//! grant it refuses after a Redis loss is answered 410/409, and Redis is resynced.
//!
//! Guarantees (see docs/coupons.md): issued <= total and one per user always; a 201 is a
//! persisted coupon whatever Redis loses.

pub mod batch;
pub mod campaign;
pub mod directory;
pub(crate) mod handlers;
pub mod issue_code;
mod keys;
pub mod reconciler;
pub mod rules;
pub mod service;
pub mod store;

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::create_campaign))
        .routes(routes!(handlers::get_campaign))
        .routes(routes!(handlers::rebuild))
        .routes(routes!(handlers::my_coupons))
}

/// The writes that need only Redis: they keep working while PostgreSQL's breaker is open.
pub fn redis_only_routes() -> ApiRouter<AppState> {
    ApiRouter::new().routes(routes!(handlers::issue))
}
