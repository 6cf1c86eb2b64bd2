//! Thumbnails, made off the request path. PostgreSQL is the queue: an upload leaves its row
//! `pending` and rings [`super::Images::wake`]; each replica's worker claims pending rows
//! (skip locked, so replicas share the work and a crashed worker's claim is taken over after
//! [`CLAIM_STALE`]), reads the original from the store, resizes it on the blocking pool (one
//! at a time per replica), stores the thumbnail and marks the row `ready`, then drops the
//! goods' cache families so the detail shows its URL.

use std::{io::Cursor, time::Duration};

use bytes::Bytes;
use image::{DynamicImage, ImageReader, Limits, codecs::jpeg::JpegEncoder, imageops::FilterType};
use tokio::sync::watch;

use super::{rules, store};
use crate::{error::ApiError, goods::cache_families, state::AppState};

/// How often the worker looks for pending thumbnails without being woken.
const TICK: Duration = Duration::from_secs(5);
/// A claim older than this is taken over (its worker died or stalled).
const CLAIM_STALE: Duration = Duration::from_secs(60);
/// Attempts before a thumbnail is given up on (`failed`: the image shows without one).
const MAX_ATTEMPTS: i32 = 3;
/// Thumbnails claimed at once.
const BATCH: i64 = 4;

/// The worker loop; stops when `shutdown` flips to true.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        loop {
            match run_once(&state).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "thumbnail claim failed; retrying at the next tick");
                    break;
                }
            }
        }
        tokio::select! {
            _ = state.images.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Claims and makes one batch of thumbnails; returns how many were claimed.
pub async fn run_once(state: &AppState) -> Result<usize, ApiError> {
    let jobs = store::claim_thumbs(state.db.pool(), BATCH, CLAIM_STALE).await?;
    let claimed = jobs.len();
    for job in jobs {
        if let Err(e) = make_one(state, &job).await {
            tracing::warn!(error = %e, image = %job.image_id, "thumbnail not made");
            let give_up = e.status().is_client_error();
            if let Err(e) =
                store::thumb_failed(state.db.pool(), job.image_id, MAX_ATTEMPTS, give_up).await
            {
                tracing::debug!(error = %e, "thumbnail failure not recorded");
            }
        }
    }
    Ok(claimed)
}

async fn make_one(state: &AppState, job: &store::ThumbJob) -> Result<(), ApiError> {
    let images = &state.images;
    let kind = rules::ImageKind::from_mime(&job.content_type)
        .ok_or_else(|| ApiError::invalid("content_type", "unknown stored image type"))?;
    let Some(original) = images.store.get(&job.object_key).await? else {
        return Err(ApiError::not_found("image object"));
    };
    let max = images.thumb_px;
    let (bytes, thumb_kind) = tokio::task::spawn_blocking(move || resize(&original, kind, max))
        .await
        .map_err(ApiError::internal)??;
    let key = rules::thumb_key(job.goods_id, job.image_id, thumb_kind);
    let etag = rules::etag_of(&bytes);
    images.store.put(&key, bytes).await?;
    match store::thumb_ready(state.db.pool(), job.image_id, &key, &etag).await? {
        Some(goods) => {
            state
                .cache
                .invalidate(&state.redis, &cache_families([goods]))
                .await;
        }
        // the goods were deleted while we worked: their objects go, this one too
        None => images.store.delete(&key).await?,
    }
    Ok(())
}

/// Decodes `original` (bounded like uploads are) and encodes its thumbnail: a JPEG, or a
/// PNG when the original has transparency. A file that does not decode is a 422 (given up).
pub fn resize(
    original: &[u8],
    kind: rules::ImageKind,
    max: u32,
) -> Result<(Bytes, rules::ImageKind), ApiError> {
    let unreadable = |e: image::ImageError| {
        ApiError::invalid(
            "file",
            format!("the {} image cannot be decoded: {e}", kind.name()),
        )
    };
    let mut reader = ImageReader::with_format(Cursor::new(original), kind.format());
    let mut limits = Limits::default();
    limits.max_image_width = Some(rules::MAX_SIDE);
    limits.max_image_height = Some(rules::MAX_SIDE);
    limits.max_alloc = Some(rules::MAX_PIXELS * 4 + 16 * 1024 * 1024);
    reader.limits(limits);
    let decoded = reader.decode().map_err(unreadable)?;
    let (w, h) = rules::thumb_size(decoded.width(), decoded.height(), max);
    let small = if (w, h) == (decoded.width(), decoded.height()) {
        decoded
    } else {
        decoded.resize_exact(w, h, FilterType::Triangle)
    };
    let thumb_kind = rules::thumb_kind(small.color().has_alpha());
    let mut out = Vec::new();
    let encoded = match thumb_kind {
        rules::ImageKind::Png => DynamicImage::ImageRgba8(small.to_rgba8())
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png),
        _ => JpegEncoder::new_with_quality(&mut out, 82).encode_image(&small.to_rgb8()),
    };
    encoded.map_err(ApiError::internal)?;
    Ok((Bytes::from(out), thumb_kind))
}

#[cfg(test)]
mod tests {
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    use super::*;

    fn encode(img: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn thumbnails_fit_and_keep_transparency() {
        let photo = encode(
            DynamicImage::ImageRgb8(RgbImage::from_pixel(1000, 500, Rgb([200, 10, 10]))),
            image::ImageFormat::Png,
        );
        let (thumb, kind) = resize(&photo, rules::ImageKind::Png, 100).unwrap();
        assert_eq!(kind, rules::ImageKind::Jpeg);
        let img = image::load_from_memory(&thumb).unwrap();
        assert_eq!((img.width(), img.height()), (100, 50));

        let logo = encode(
            DynamicImage::ImageRgba8(RgbaImage::from_pixel(40, 80, Rgba([0, 0, 0, 0]))),
            image::ImageFormat::WebP,
        );
        let (thumb, kind) = resize(&logo, rules::ImageKind::Webp, 100).unwrap();
        assert_eq!(kind, rules::ImageKind::Png);
        assert_eq!(rules::sniff(&thumb).unwrap(), rules::ImageKind::Png);
        let img = image::load_from_memory(&thumb).unwrap();
        assert_eq!((img.width(), img.height()), (40, 80), "never enlarged");
    }

    #[test]
    fn a_broken_file_is_given_up_not_a_panic() {
        let err = resize(b"\xFF\xD8\xFF\xE0garbage", rules::ImageKind::Jpeg, 100).unwrap_err();
        assert!(err.status().is_client_error(), "{err}");
    }
}
