//! Goods images handlers.

use axum::{
    Json,
    extract::{FromRequest, Multipart, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body_util::Limited;
use uuid::Uuid;

use super::{ImageView, rules, store, upload};
use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, ApiResult},
    goods::{GoodsId, cache_families},
    state::AppState,
};

/// The multipart body of an upload.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the documented shape of the multipart body
pub struct ImageUpload {
    /// The image file: JPEG, PNG or WebP, judged from its bytes (the part's name and
    /// Content-Type are ignored), at most `FLOODGATE_IMAGE_MAX_BYTES`.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The bytes of an image file.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // the documented shape of an image answer
pub struct ImageBytes(Vec<u8>);

/// Add an image to goods (the owning seller only). One `file` part; its type is judged from
/// its bytes. The thumbnail is made shortly after (its URL appears in the goods detail).
#[utoipa::path(post, path = "/goods/{id}/images", operation_id = "upload_goods_image", tag = "goods", security(("bearer" = ["seller"])),
    params(("id" = i64, Path)),
    request_body(content = ImageUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = ImageView),
              (status = 403, description = "`not-owner`: the goods are another seller's", content_type = "application/problem+json"),
              (status = 409, description = "`image-limit-reached`: the goods hold `FLOODGATE_IMAGE_MAX_PER_GOODS` images", content_type = "application/problem+json"),
              (status = 413, description = "`payload-too-large`: the file is over `FLOODGATE_IMAGE_MAX_BYTES`", content_type = "application/problem+json"),
              (status = 415, description = "`unsupported-image-type`: the file's bytes are not JPEG, PNG or WebP", content_type = "application/problem+json"),
              (status = 422, description = "`validation-failed` (`field`: `file`): no `file` part, an empty one, two of them, an unreadable header or too many pixels", content_type = "application/problem+json")))]
pub async fn upload(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ImageView>)> {
    user.require(Role::Seller)?;
    let goods = GoodsId(id);
    // who may, and whether one more fits, before a byte of the body is read
    upload::check_may_add(&state, goods, user.id).await?;
    let limit = state.images.upload_body_limit();
    let request = request.map(|body| axum::body::Body::new(Limited::new(body, limit)));
    let multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!(
                    "send the image as multipart/form-data with a `file` part ({})",
                    e.body_text()
                ),
            )
        })?;
    let bytes = upload::read_file(multipart, state.images.max_bytes).await?;
    let view = upload::store_new(&state, goods, user.id, bytes).await?;
    state
        .cache
        .invalidate(&state.redis, &cache_families([goods]))
        .await;
    state.images.wake.notify_one();
    Ok((StatusCode::CREATED, Json(view)))
}

/// An image as uploaded, with `ETag` and `Cache-Control` (304 on a matching `If-None-Match`).
#[utoipa::path(get, path = "/goods/{id}/images/{image_id}", operation_id = "goods_image", tag = "goods",
    params(("id" = i64, Path), ("image_id" = Uuid, Path), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "The image's bytes", content(
                  (ImageBytes = "image/jpeg"), (ImageBytes = "image/png"), (ImageBytes = "image/webp")),
                headers(("ETag" = String), ("Cache-Control" = String))),
              (status = 304, description = "Not modified: the `If-None-Match` tag is current", headers(("ETag" = String), ("Cache-Control" = String)))))]
pub async fn original(
    State(state): State<AppState>,
    Path((id, image)): Path<(i64, Uuid)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&state, GoodsId(id), image, false, &headers).await
}

/// An image's thumbnail (JPEG, or PNG for images with transparency), once it is made.
#[utoipa::path(get, path = "/goods/{id}/images/{image_id}/thumbnail", operation_id = "goods_image_thumbnail", tag = "goods",
    params(("id" = i64, Path), ("image_id" = Uuid, Path), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "The thumbnail's bytes", content((ImageBytes = "image/jpeg"), (ImageBytes = "image/png")),
                headers(("ETag" = String), ("Cache-Control" = String))),
              (status = 304, description = "Not modified: the `If-None-Match` tag is current", headers(("ETag" = String), ("Cache-Control" = String))),
              (status = 404, description = "No such image, or its thumbnail is not made yet", content_type = "application/problem+json")))]
pub async fn thumbnail(
    State(state): State<AppState>,
    Path((id, image)): Path<(i64, Uuid)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve(&state, GoodsId(id), image, true, &headers).await
}

async fn serve(
    state: &AppState,
    goods: GoodsId,
    image: Uuid,
    thumbnail: bool,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let row = state
        .db
        .run(async |c| store::find(c, goods, image).await)
        .await?
        .ok_or_else(|| ApiError::not_found("image"))?;
    let (key, etag, mime) = if thumbnail {
        let (Some(key), Some(etag)) = (row.thumb_key, row.thumb_etag) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "the thumbnail of this image is not made yet; retry shortly",
            ));
        };
        let mime = rules::kind_of_key(&key).map_or("application/octet-stream", |k| k.mime());
        (key, etag, mime)
    } else {
        let mime = rules::ImageKind::from_mime(&row.content_type)
            .map_or("application/octet-stream", |k| k.mime());
        (row.object_key, row.etag, mime)
    };
    let tag = HeaderValue::from_str(&format!("\"{etag}\"")).map_err(ApiError::internal)?;
    let caching = [
        (header::ETAG, tag),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(rules::CACHE_CONTROL),
        ),
    ];
    let hit = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| rules::none_match_hits(v, &etag));
    if hit {
        return Ok((StatusCode::NOT_MODIFIED, caching).into_response());
    }
    let Some(bytes) = state.images.store.get(&key).await? else {
        tracing::warn!(key, "an image row points to a missing object");
        return Err(ApiError::not_found("image"));
    };
    Ok((
        caching,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        bytes,
    )
        .into_response())
}
