//! Admin-only operational views.

use axum::{Json, extract::State};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use crate::{
    auth::{CurrentUser, Role},
    error::ApiResult,
    platform::api_router::ApiRouter,
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct RuntimeConfigView {
    /// Version in force on this replica (0: built-in defaults, no document published).
    pub version: u64,
    /// The whole document in force, as the operator wrote it.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub replica: String,
}

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().routes(routes!(runtime_config))
}

/// The runtime configuration this replica is applying.
#[utoipa::path(get, path = "/admin/runtime-config", tag = "admin", security(("bearer" = ["admin"])),
    responses((status = 200, body = RuntimeConfigView), (status = 401, content_type = "application/problem+json"),
              (status = 403, content_type = "application/problem+json")))]
pub async fn runtime_config(
    State(state): State<AppState>,
    user: CurrentUser,
) -> ApiResult<Json<RuntimeConfigView>> {
    user.require(Role::Admin)?;
    let cfg = state.runtime.get();
    Ok(Json(RuntimeConfigView {
        version: cfg.version,
        config: serde_json::to_value(&*cfg).unwrap_or_default(),
        replica: state.settings.replica_id(),
    }))
}
