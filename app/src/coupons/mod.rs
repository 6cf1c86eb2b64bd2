//! First-come-first-served coupons.
//!
//! One Lua script decides each issue atomically in Redis (window open, user not a holder yet,
//! fewer holders than the total) and, in the same step, appends the grant to the campaign's
//! stream. Consumers (any number of replicas, one consumer group) persist grants into
//! PostgreSQL in batches — a unique (campaign, user) constraint and a cap check on the
//! campaign row make redelivery harmless and keep the database authoritative. If Redis loses
//! a campaign's keys, they are rebuilt from PostgreSQL plus the stream's unpersisted entries
//! before anything else is issued.
//!
//! Guarantees (see docs/coupons.md): issued ≤ total and one per user always (PostgreSQL
//! enforces both whatever Redis says); an acknowledged coupon is in the stream the moment it
//! is acknowledged, so it survives an app crash, and survives a Redis restart when Redis
//! persists (AOF); only a wipe of Redis data before the consumer persisted it loses it.

pub mod consumer;
mod handlers;
mod keys;
pub mod service;
pub mod store;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::create_campaign))
        .routes(routes!(handlers::get_campaign))
        .routes(routes!(handlers::issue))
        .routes(routes!(handlers::rebuild))
        .routes(routes!(handlers::my_coupons))
}
