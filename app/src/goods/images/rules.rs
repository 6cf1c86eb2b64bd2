//! Pure image rules: what an upload's bytes are (judged from their magic, never from the
//! client's name or Content-Type), the limits, object key naming, thumbnail sizes, ETags.

use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{error::ApiError, goods::GoodsId};

/// The largest width or height accepted.
pub const MAX_SIDE: u32 = 8_192;
/// Most pixels of an accepted image (16 megapixels; a 12-megapixel phone photo is 4032 x
/// 3024): a thumbnail's decode holds at most about 64 MB (RGBA), one at a time per replica,
/// beside the app's own ~150 MB under load in the chart's 256 Mi (decoding also caps the
/// allocation, see `thumbnails`).
pub const MAX_PIXELS: u64 = 16_000_000;
/// Images never change under their URL (a new upload is a new id), so caches may keep them;
/// a day bounds how long a deleted image stays in a shared cache.
pub const CACHE_CONTROL: &str = "public, max-age=86400";

/// The image types an upload may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Webp => "WebP",
        }
    }

    pub fn format(self) -> image::ImageFormat {
        match self {
            Self::Jpeg => image::ImageFormat::Jpeg,
            Self::Png => image::ImageFormat::Png,
            Self::Webp => image::ImageFormat::WebP,
        }
    }

    /// The kind stored under `mime` (the database's `content_type`).
    pub fn from_mime(mime: &str) -> Option<Self> {
        [Self::Jpeg, Self::Png, Self::Webp]
            .into_iter()
            .find(|k| k.mime() == mime)
    }
}

/// The type of `bytes` from their first bytes: JPEG (`FF D8 FF`), PNG (its 8-byte signature)
/// or WebP (`RIFF`, a length, `WEBP`).
pub fn sniff(bytes: &[u8]) -> Result<ImageKind, ApiError> {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Ok(ImageKind::Jpeg)
    } else if bytes.starts_with(PNG) {
        Ok(ImageKind::Png)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Ok(ImageKind::Webp)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-image-type",
            "the file is not a JPEG, PNG or WebP image (the type is judged from the file's \
             bytes, not from its name or Content-Type)",
        ))
    }
}

/// The answer to a file over `max` bytes.
pub fn too_large(max: u32) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        format!("the image is larger than {max} bytes (FLOODGATE_IMAGE_MAX_BYTES)"),
    )
    .with_extra(serde_json::json!({ "max_bytes": max }))
}

/// The largest upload body: the file plus room for the multipart framing (boundaries, part
/// headers, small other parts).
pub fn upload_body_limit(max_bytes: u32) -> usize {
    max_bytes as usize + 16 * 1024
}

/// An empty `file` part.
pub fn check_not_empty(len: usize) -> Result<(), ApiError> {
    if len == 0 {
        return Err(ApiError::invalid("file", "the file part is empty"));
    }
    Ok(())
}

/// One more image may be added to goods that hold `existing`.
pub fn check_count(goods: GoodsId, existing: i64, max: u32) -> Result<(), ApiError> {
    if existing >= i64::from(max) {
        return Err(ApiError::conflict(
            "image-limit-reached",
            format!(
                "goods {} already have {existing} images, the most allowed per goods item \
                 (FLOODGATE_IMAGE_MAX_PER_GOODS={max})",
                goods.0
            ),
        )
        .with_extra(serde_json::json!({ "max_images": max })));
    }
    Ok(())
}

/// The decoded header's size is within [`MAX_SIDE`] and [`MAX_PIXELS`].
pub fn check_dimensions(kind: ImageKind, width: u32, height: u32) -> Result<(), ApiError> {
    if width == 0 || height == 0 {
        return Err(ApiError::invalid(
            "file",
            format!("the {} image has no pixels", kind.name()),
        ));
    }
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ApiError::invalid(
            "file",
            format!(
                "the image is {width}x{height} pixels; at most {MAX_SIDE} per side and \
                 {MAX_PIXELS} in all"
            ),
        ));
    }
    Ok(())
}

/// Every object of `goods` lives under this prefix (deleting the goods lists and deletes it).
pub fn goods_prefix(goods: GoodsId) -> String {
    format!("goods/{}", goods.0)
}

/// `goods/<goods id>/<image id>.<ext>`.
pub fn original_key(goods: GoodsId, image: Uuid, kind: ImageKind) -> String {
    format!("{}/{image}.{}", goods_prefix(goods), kind.extension())
}

/// `goods/<goods id>/<image id>.thumb.<ext>`.
pub fn thumb_key(goods: GoodsId, image: Uuid, kind: ImageKind) -> String {
    format!("{}/{image}.thumb.{}", goods_prefix(goods), kind.extension())
}

/// A thumbnail is a JPEG, or a PNG when the original has transparency.
pub fn thumb_kind(has_alpha: bool) -> ImageKind {
    if has_alpha {
        ImageKind::Png
    } else {
        ImageKind::Jpeg
    }
}

/// The kind of a thumbnail from its key's extension.
pub fn kind_of_key(key: &str) -> Option<ImageKind> {
    match key.rsplit_once('.')?.1 {
        "jpg" => Some(ImageKind::Jpeg),
        "png" => Some(ImageKind::Png),
        "webp" => Some(ImageKind::Webp),
        _ => None,
    }
}

/// The size of a thumbnail of a `width` x `height` image whose longest side is at most `max`
/// (aspect kept, never enlarged, at least 1 pixel per side).
pub fn thumb_size(width: u32, height: u32, max: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max) + u64::from(longest) / 2) / u64::from(longest)).max(1)
            as u32
    };
    (scale(width), scale(height))
}

/// The strong ETag of `bytes` (the first 128 bits of their SHA-256, hex, unquoted).
pub fn etag_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// Does an `If-None-Match` value name `etag` (or `*`)? Weak tags compare by their value.
pub fn none_match_hits(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == etag)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sniffing_reads_the_magic_bytes() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest").unwrap(), ImageKind::Jpeg);
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap(),
            ImageKind::Png
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap(), ImageKind::Webp);
        for bad in [
            &b""[..],
            b"hello, this is text named x.jpg",
            b"\x89PNG\r\n",
            b"RIFF\x10\0\0\0WAVEfmt ",
            b"GIF89a",
            b"\xFF\xD8",
        ] {
            let err = sniff(bad).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert!(err.detail().contains("JPEG, PNG or WebP"), "{err}");
        }
    }

    #[test]
    fn limits_name_what_was_broken() {
        assert!(check_count(GoodsId(7), 7, 8).is_ok());
        let err = check_count(GoodsId(7), 8, 8).unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert!(
            err.detail().contains("goods 7 already have 8 images"),
            "{err}"
        );
        assert_eq!(too_large(10).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(too_large(10).detail().contains("10 bytes"));
        assert!(check_not_empty(1).is_ok());
        assert_eq!(
            check_not_empty(0).unwrap_err().status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert!(check_dimensions(ImageKind::Png, MAX_SIDE, 1_953).is_ok());
        assert!(check_dimensions(ImageKind::Png, 4_000, 4_000).is_ok());
        for (w, h) in [(0, 10), (MAX_SIDE + 1, 1), (4_000, 4_001)] {
            let err = check_dimensions(ImageKind::Png, w, h).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY, "{w}x{h}");
        }
    }

    #[test]
    fn keys_live_under_the_goods_prefix() {
        let id = Uuid::nil();
        let key = original_key(GoodsId(42), id, ImageKind::Webp);
        assert_eq!(key, format!("goods/42/{id}.webp"));
        let thumb = thumb_key(GoodsId(42), id, thumb_kind(false));
        assert_eq!(thumb, format!("goods/42/{id}.thumb.jpg"));
        assert!(key.starts_with(&format!("{}/", goods_prefix(GoodsId(42)))));
        // goods 4 must not own goods 42's objects
        assert!(!key.starts_with(&format!("{}/", goods_prefix(GoodsId(4)))));
        assert_eq!(kind_of_key(&thumb), Some(ImageKind::Jpeg));
        assert_eq!(
            kind_of_key(&thumb_key(GoodsId(1), id, thumb_kind(true))),
            Some(ImageKind::Png)
        );
    }

    #[test]
    fn etags_and_if_none_match() {
        let tag = etag_of(b"abc");
        assert_eq!(tag.len(), 32);
        assert!(none_match_hits(&format!("\"{tag}\""), &tag));
        assert!(none_match_hits(&format!("\"x\", W/\"{tag}\""), &tag));
        assert!(none_match_hits("*", &tag));
        assert!(!none_match_hits("\"other\"", &tag));
        assert_ne!(etag_of(b"abd"), tag);
    }

    proptest! {
        #[test]
        fn thumbnails_fit_keep_aspect_and_never_grow(w in 1u32..=MAX_SIDE, h in 1u32..=MAX_SIDE, max in 16u32..=2048) {
            let (tw, th) = thumb_size(w, h, max);
            prop_assert!(tw >= 1 && th >= 1);
            prop_assert!(tw <= w && th <= h);
            if w.max(h) > max {
                prop_assert_eq!(tw.max(th), max);
                // the shorter side scaled by the same factor, to within rounding
                let expect = f64::from(w.min(h)) * f64::from(max) / f64::from(w.max(h));
                prop_assert!((f64::from(tw.min(th)) - expect).abs() <= 1.0);
            } else {
                prop_assert_eq!((tw, th), (w, h));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_only_magic_passes(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(kind) = sniff(&bytes) {
                let ok = match kind {
                    ImageKind::Jpeg => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
                    ImageKind::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                    ImageKind::Webp => &bytes[8..12] == b"WEBP",
                };
                prop_assert!(ok);
            }
        }
    }
}
