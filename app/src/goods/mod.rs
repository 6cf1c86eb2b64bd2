//! Sellers' goods: create, update, soft-delete; public list (newest first, keyset pages) and
//! detail, both served from the Redis cache-aside layer and invalidated on every change —
//! including stock changes made by orders and cancellations ([`stock_changed`]). Goods carry
//! images (`images`); orders ask the sold-out gate ([`soldout`]) before the database.

pub(crate) mod handlers;
pub mod images;
pub mod model;
mod quantity;
pub mod soldout;
pub mod store;

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub use model::{GoodsId, GoodsView};
pub use quantity::Quantity;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
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

/// Which way the stock of some goods moved, for [`stock_changed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockMove {
    /// Orders took stock.
    Taken,
    /// Stock may be back: a cancellation restocked, or the seller updated the goods.
    Returned,
}

/// After a commit that changed the stock of `ids`: stock that may be back reopens the
/// sold-out gate (bumping its generation, so a racing "sold out" cannot stick), and the
/// cached views of the goods are dropped.
pub async fn stock_changed(state: &AppState, ids: &[GoodsId], how: StockMove) {
    if ids.is_empty() {
        return;
    }
    if how == StockMove::Returned {
        soldout::clear(state, ids).await;
    }
    state
        .cache
        .invalidate(&state.redis, &cache_families(ids.iter().copied()))
        .await;
}
