//! The cart: quantities per goods item, shown with current prices; goods that were deleted or
//! sold out are flagged, not silently dropped.

mod handlers;
pub mod store;

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::get_cart))
        .routes(routes!(handlers::put_item, handlers::delete_item))
}
