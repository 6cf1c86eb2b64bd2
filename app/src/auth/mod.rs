//! Authentication: signup, login, refresh-token rotation with theft detection, logout, the
//! access-token verifier, the current-user extractor every domain uses, and the signed-in
//! user's `/users/me` (`profile`). The accounts themselves (ids, roles, rows) are
//! [`crate::users`], below this module.

pub mod extract;
mod handlers;
pub mod hs256;
pub mod jwt;
pub mod password;
mod profile;
pub mod rate_limit;
pub mod refresh;
pub mod verified;

/// Accounts live below authentication ([`crate::users`]); their old paths stay.
pub use crate::users::{store, types};
pub use extract::CurrentUser;
pub use types::{Email, Role, UserId};

use utoipa_axum::routes;

use crate::{platform::api_router::ApiRouter, state::AppState};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .routes(routes!(handlers::signup))
        .routes(routes!(handlers::login))
        .routes(routes!(handlers::refresh))
        .routes(routes!(handlers::logout))
        .merge(profile::routes())
}
