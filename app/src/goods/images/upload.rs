//! An upload, in order: who may (the owning seller), whether one more fits, reading the one
//! `file` part within the size limit, what its bytes are, then storing it. Every refusal
//! happens before anything is stored; a refusal only the database can see (a concurrent
//! upload took the last slot, the goods were deleted meanwhile) removes the stored object.

use axum::{
    extract::multipart::{Multipart, MultipartError},
    http::StatusCode,
};
use bytes::{Bytes, BytesMut};
use uuid::Uuid;

use super::{
    ImageView, Images, rules,
    store::{self, NewImage},
};
use crate::{auth::UserId, error::ApiError, goods::GoodsId, state::AppState};

/// The 403/404 of an image change, and the count check, from what the database holds now.
pub async fn check_may_add(
    state: &AppState,
    goods: GoodsId,
    seller: UserId,
) -> Result<(), ApiError> {
    let found = state
        .db
        .run(async |c| store::owner_and_count(c, goods).await)
        .await?;
    check_owner_and_count(goods, seller, found, state.images.max_per_goods)
}

fn check_owner_and_count(
    goods: GoodsId,
    seller: UserId,
    found: Option<(UserId, i64)>,
    max: u32,
) -> Result<(), ApiError> {
    match found {
        None => Err(ApiError::not_found("goods")),
        Some((owner, _)) if owner != seller => Err(ApiError::forbidden(
            "not-owner",
            "only the seller who listed these goods may add images to them",
        )),
        Some((_, count)) => rules::check_count(goods, count, max),
    }
}

/// The bytes of the one `file` part, read chunk by chunk and refused as soon as they pass
/// `max` bytes.
pub async fn read_file(mut multipart: Multipart, max: u32) -> Result<Bytes, ApiError> {
    let mut file: Option<Bytes> = None;
    let bad = |e| bad_multipart(e, max);
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        if file.is_some() {
            return Err(ApiError::invalid(
                "file",
                "send one `file` part per request (one image per upload)",
            ));
        }
        let mut bytes = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if bytes.len() + chunk.len() > max as usize {
                return Err(rules::too_large(max));
            }
            bytes.extend_from_slice(&chunk);
        }
        file = Some(bytes.freeze());
    }
    let file = file.ok_or_else(|| {
        ApiError::invalid(
            "file",
            "the multipart/form-data body has no `file` part (send the image as -F file=@photo.jpg)",
        )
    })?;
    rules::check_not_empty(file.len())?;
    Ok(file)
}

/// A malformed multipart body is the client's fault (400); past the body limit, the file
/// is too large (413).
fn bad_multipart(e: MultipartError, max: u32) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return rules::too_large(max);
    }
    ApiError::bad_request(format!(
        "the multipart/form-data body cannot be read: {}",
        e.body_text()
    ))
}

/// What the bytes are and their size in pixels, from the type's header.
pub fn inspect(bytes: &[u8]) -> Result<(rules::ImageKind, u32, u32), ApiError> {
    let kind = rules::sniff(bytes)?;
    let reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), kind.format());
    let (width, height) = reader.into_dimensions().map_err(|e| {
        ApiError::invalid(
            "file",
            format!(
                "the file starts like a {} image but its header cannot be read: {e}",
                kind.name()
            ),
        )
    })?;
    rules::check_dimensions(kind, width, height)?;
    Ok((kind, width, height))
}

/// Stores a checked file as a new image of `goods`, then records it; the 201's body.
pub async fn store_new(
    state: &AppState,
    goods: GoodsId,
    seller: UserId,
    bytes: Bytes,
) -> Result<ImageView, ApiError> {
    let (kind, width, height) = inspect(&bytes)?;
    let image_id = Uuid::new_v4();
    let key = rules::original_key(goods, image_id, kind);
    let etag = rules::etag_of(&bytes);
    let byte_size = i32::try_from(bytes.len()).map_err(ApiError::internal)?;
    let images: &Images = &state.images;
    images.store.put(&key, bytes).await?;
    let new = NewImage {
        image_id,
        goods_id: goods,
        content_type: kind.mime(),
        byte_size,
        width: width as i32,
        height: height as i32,
        etag: &etag,
        object_key: &key,
    };
    let max = images.max_per_goods;
    let recorded = state
        .db
        .tx(async |c| {
            store::lock_goods(c, goods).await?;
            let found = store::owner_and_count(&mut *c, goods).await?;
            check_owner_and_count(goods, seller, found, max)?;
            Ok::<_, ApiError>(store::insert(&mut *c, &new).await?)
        })
        .await;
    match recorded {
        Ok(row) => Ok(ImageView::from_row(&row)),
        Err(e) => {
            if let Err(cleanup) = images.store.delete(&key).await {
                tracing::warn!(error = %cleanup, key, "an unrecorded image object was left behind");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_count_decide_403_404_409() {
        let (me, other) = (UserId(1), UserId(2));
        let g = GoodsId(5);
        assert_eq!(
            check_owner_and_count(g, me, None, 8).unwrap_err().status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            check_owner_and_count(g, me, Some((other, 0)), 8)
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            check_owner_and_count(g, me, Some((me, 8)), 8)
                .unwrap_err()
                .status(),
            StatusCode::CONFLICT
        );
        assert!(check_owner_and_count(g, me, Some((me, 7)), 8).is_ok());
    }

    #[test]
    fn a_magic_header_alone_is_not_an_image() {
        let err = inspect(b"\x89PNG\r\n\x1a\nnot really").unwrap_err();
        assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err.detail().contains("PNG"), "{err}");
    }
}
