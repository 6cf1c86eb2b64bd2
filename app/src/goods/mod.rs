//! Sellers' goods: create, update, soft-delete; public list (newest first, keyset pages) and
//! detail, both served from the Redis cache-aside layer and invalidated on every change —
//! including stock changes made by orders and cancellations. Goods carry images (`images`).

mod handlers;
pub mod images;
pub mod model;
pub mod soldout;
pub mod store;

use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub use model::{GoodsId, GoodsView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(
            handlers::detail,
            handlers::update,
            handlers::delete
        ))
        .merge(images::routes())
}

/// Cache families touched by a change to `id` (its detail and every list page).
pub fn cache_families(ids: impl IntoIterator<Item = GoodsId>) -> Vec<String> {
    let mut families: Vec<String> = ids
        .into_iter()
        .map(|id| format!("goods:{}", id.0))
        .collect();
    families.push("goods:list".into());
    families
}
