//! Goods images: a seller uploads JPEG, PNG or WebP files to their goods
//! (`POST /goods/{id}/images`, multipart); the originals and their thumbnails live in the
//! image store (`storage`: a local folder, or S3); the goods list and detail carry their URLs,
//! which the app serves with `ETag` and `Cache-Control` (on S3 too: see `handlers::original`).
//!
//! - `rules`: the type from the bytes, limits, object keys, thumbnail sizes, ETags (pure).
//! - `upload`: the order of checks of an upload; nothing is stored for a refused one.
//! - `thumbnails`: the background worker that makes thumbnails off the request path.
//! - `store`: SQL; `storage`: the object store (`s3_client`: its HTTP client for S3).

mod handlers;
pub mod rules;
mod s3_client;
pub mod storage;
pub mod store;
pub mod thumbnails;
mod upload;

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgConnection;
use tokio::sync::Notify;
use utoipa::ToSchema;
use utoipa_axum::{router::UtoipaMethodRouterExt, routes};
use uuid::Uuid;

use self::{storage::ImageStore, store::ImageRow};
use super::{GoodsId, GoodsView};
use crate::{
    config::ImageSettings, error::ApiError, platform::api_router::ApiRouter, state::AppState,
};

/// The image store, the limits, and the thumbnail worker's wake-up.
pub struct Images {
    pub store: ImageStore,
    pub max_bytes: u32,
    pub max_per_goods: u32,
    pub thumb_px: u32,
    /// Rung after an upload so the worker starts at once instead of at its next tick.
    pub wake: Notify,
}

impl Images {
    pub fn from_settings(settings: &ImageSettings) -> anyhow::Result<Self> {
        Ok(Self {
            store: ImageStore::from_settings(settings)?,
            max_bytes: settings.image_max_bytes,
            max_per_goods: settings.image_max_per_goods,
            thumb_px: settings.image_thumb_px,
            wake: Notify::new(),
        })
    }

    /// The body limit of the upload route (see [`rules::upload_body_limit`]).
    pub fn upload_body_limit(&self) -> usize {
        rules::upload_body_limit(self.max_bytes)
    }
}

/// An image as goods list and detail show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImageView {
    pub id: Uuid,
    /// The original, served by this API with `ETag` and `Cache-Control`.
    #[schema(example = "/api/v1/goods/42/images/6f1c2a8e-8d5b-4c1e-9a57-2f0b1c3d4e5f")]
    pub url: String,
    /// Absent until the thumbnail has been made (shortly after the upload).
    pub thumbnail_url: Option<String>,
    /// Judged from the file's bytes.
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    pub width: i32,
    pub height: i32,
    pub bytes: i32,
}

impl ImageView {
    pub fn from_row(row: &ImageRow) -> Self {
        let url = format!("/api/v1/goods/{}/images/{}", row.goods_id.0, row.image_id);
        Self {
            id: row.image_id,
            thumbnail_url: row.thumb_key.as_ref().map(|_| format!("{url}/thumbnail")),
            url,
            content_type: row.content_type.clone(),
            width: row.width,
            height: row.height,
            bytes: row.byte_size,
        }
    }
}

pub fn routes() -> ApiRouter<AppState> {
    // the upload's own limit (`Images::upload_body_limit`) replaces the JSON body limit
    let no_default_limit = axum::extract::DefaultBodyLimit::disable();
    ApiRouter::new()
        .routes(routes!(handlers::upload).layer(no_default_limit))
        .routes(routes!(handlers::original))
        .routes(routes!(handlers::thumbnail))
}

/// Fills `images` of each goods item (one query for the whole slice).
pub async fn attach(conn: &mut PgConnection, goods: &mut [GoodsView]) -> Result<(), sqlx::Error> {
    if goods.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = goods.iter().map(|g| g.id.0).collect();
    let mut by_goods: HashMap<GoodsId, Vec<ImageView>> = HashMap::new();
    for row in store::for_goods(conn, &ids).await? {
        by_goods
            .entry(row.goods_id)
            .or_default()
            .push(ImageView::from_row(&row));
    }
    for g in goods {
        g.images = by_goods.remove(&g.id).unwrap_or_default();
    }
    Ok(())
}

/// Deletes the objects of `goods` after its rows went (the soft delete's transaction). A
/// store that fails leaves objects no row points to; they are logged, never served.
pub async fn remove_objects(state: &AppState, goods: GoodsId) {
    let prefix = rules::goods_prefix(goods);
    match state.images.store.delete_prefix(&prefix).await {
        Ok(n) => tracing::debug!(goods = goods.0, objects = n, "goods images removed"),
        Err(e) => {
            tracing::warn!(error = %e, prefix, "goods images could not be removed from the store")
        }
    }
}

/// The image rows of `goods` go inside the caller's transaction (the soft delete), under the
/// lock uploads take, so no upload lands between.
pub async fn delete_rows(conn: &mut PgConnection, goods: GoodsId) -> Result<u64, ApiError> {
    store::lock_goods(conn, goods).await?;
    Ok(store::delete_for_goods(conn, goods).await?)
}
