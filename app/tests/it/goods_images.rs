//! Goods images end to end, on the local folder store and on a real S3-compatible server
//! (moto, started by the test): upload as the owning seller, visible in the detail right
//! after the 201 (the cached detail is invalidated), the type judged from the bytes, every
//! refusal a problem+json with nothing stored, the thumbnail made in the background, reads
//! with ETag/304, and deleting the goods removes rows and objects (the store listed to prove it).

use crate::common;
use crate::goods_images_support;

use std::time::{Duration, Instant};

use common::{TestApp, expect_problem};
use floodgate_app::config::{ImageStoreKind, Settings};
use goods_images_support::{Moto, Objects, image_file, multipart};
use image::ImageFormat;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::MIGRATOR;
const THUMB_PX: u32 = 64;

struct Store {
    objects: Objects,
    tweak: Box<dyn Fn(&mut Settings) + Send>,
    _moto: Option<Moto>,
    _dir: Option<tempfile::TempDir>,
}

fn local() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    Store {
        objects: Objects::Folder(path.clone()),
        tweak: Box::new(move |s| {
            s.images.image_store = ImageStoreKind::Local;
            s.images.image_dir = path.clone();
        }),
        _moto: None,
        _dir: Some(dir),
    }
}

async fn s3() -> Store {
    let moto = Moto::start();
    moto.create_bucket("goods-images").await;
    let endpoint = moto.endpoint.clone();
    Store {
        objects: Objects::Bucket {
            endpoint: endpoint.clone(),
            bucket: "goods-images".into(),
        },
        tweak: Box::new(move |s| {
            let i = &mut s.images;
            i.image_store = ImageStoreKind::S3;
            i.image_s3_bucket = Some("goods-images".into());
            i.image_s3_endpoint = Some(endpoint.clone());
            i.aws_access_key_id = Some("testing".to_owned().into());
            i.aws_secret_access_key = Some("testing".to_owned().into());
        }),
        _moto: Some(moto),
        _dir: None,
    }
}

async fn spawn(pool: PgPool, store: &Store, max_bytes: u32, max_per_goods: u32) -> TestApp {
    TestApp::spawn_with(pool, |s| {
        (store.tweak)(s);
        s.images.image_max_bytes = max_bytes;
        s.images.image_max_per_goods = max_per_goods;
        s.images.image_thumb_px = THUMB_PX;
    })
    .await
}

/// Uploads one part `file` (file name, part Content-Type, bytes).
async fn upload(
    app: &TestApp,
    goods: i64,
    token: &str,
    part: (&str, &str, &[u8]),
) -> reqwest::Response {
    let (ct, body) = multipart(&[("file", part.0, part.1, part.2)]);
    upload_raw(app, goods, token, &ct, body).await
}

async fn upload_raw(
    app: &TestApp,
    goods: i64,
    token: &str,
    ct: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/api/v1/goods/{goods}/images")))
        .bearer_auth(token)
        .header(header::CONTENT_TYPE, ct)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A GET of `url` with `If-None-Match: etag`.
async fn conditional_get(app: &TestApp, url: &str, etag: &str) -> reqwest::Response {
    app.http
        .get(app.url(url))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap()
}

async fn detail(app: &TestApp, goods: i64) -> Value {
    let res = app.get(&format!("/api/v1/goods/{goods}"), None).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn rows(app: &TestApp, goods: i64) -> i64 {
    sqlx::query_scalar("select count(*) from goods_images where goods_id = $1")
        .bind(goods)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
}

/// The full flow of one store: upload, detail, thumbnail, ETag/304, list, delete.
async fn upload_flow(pool: PgPool, store: Store) {
    let app = spawn(pool, &store, 1024 * 1024, 4).await;
    let seller = app.seller().await;
    let token = seller.token.clone();
    let goods = seller
        .goods_from(&json!({"name": "Hoodie", "price": 39000, "stock": 5}))
        .await;
    // the detail is cached before the upload: the 201 must not leave it stale
    assert_eq!(detail(&app, goods).await["images"], json!([]));

    // a PNG sent as image/jpeg named photo.jpg is a PNG
    let png = image_file(300, 150, ImageFormat::Png);
    let res = upload(&app, goods, &token, ("photo.jpg", "image/jpeg", &png)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    assert_eq!(created["content_type"], "image/png", "{created}");
    assert_eq!(
        (created["width"].as_i64(), created["height"].as_i64()),
        (Some(300), Some(150))
    );
    let url = created["url"].as_str().unwrap().to_owned();

    let shown = detail(&app, goods).await;
    assert_eq!(
        shown["images"][0]["url"],
        url.as_str(),
        "stale detail after 201: {shown}"
    );
    let prefix = format!("goods/{goods}/");
    let keys = store.objects.keys(&prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with(".png"), "{keys:?}");

    // the original, byte for byte, with ETag and Cache-Control; 304 on If-None-Match
    let res = app.get(&url, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "image/png");
    assert!(
        res.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(res.bytes().await.unwrap().as_ref(), png.as_slice());
    let again = conditional_get(&app, &url, &etag).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
    let other = conditional_get(&app, &url, "\"nope\"").await;
    assert_eq!(other.status(), StatusCode::OK);

    // the thumbnail appears in the detail, made off the request path
    let thumb_url = wait_for_thumbnail(&app, goods).await;
    let res = app.get(&thumb_url, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let thumb_etag = res.headers()[header::ETAG].to_str().unwrap().to_owned();
    let thumb = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (THUMB_PX, THUMB_PX / 2));
    let again = conditional_get(&app, &thumb_url, &thumb_etag).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(store.objects.keys(&prefix).await.len(), 2);

    // the list carries the images too
    let list: Value = app.get("/api/v1/goods", None).await.json().await.unwrap();
    let item = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == goods)
        .unwrap();
    assert_eq!(item["images"][0]["thumbnail_url"], thumb_url.as_str());

    // deleting the goods removes rows and objects
    let res = app
        .http
        .delete(app.url(&format!("/api/v1/goods/{goods}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(rows(&app, goods).await, 0);
    assert_eq!(store.objects.keys(&prefix).await, Vec::<String>::new());
    expect_problem(app.get(&url, None).await, StatusCode::NOT_FOUND).await;
}

async fn wait_for_thumbnail(app: &TestApp, goods: i64) -> String {
    let start = Instant::now();
    loop {
        let shown = detail(app, goods).await;
        if let Some(url) = shown["images"][0]["thumbnail_url"].as_str() {
            return url.to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no thumbnail after 15 s: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every refusal is a precise problem+json and leaves no row and no object behind.
async fn refusals(pool: PgPool, store: Store) {
    let app = spawn(pool, &store, 64 * 1024, 2).await;
    let seller = app.seller().await;
    let token = seller.token.clone();
    let other = app.seller_named("other@example.com").await.token;
    let customer = app.customer("customer@example.com").await;
    let goods = seller
        .goods_from(&json!({"name": "Hoodie", "price": 39000, "stock": 5}))
        .await;
    let prefix = format!("goods/{goods}/");
    let jpeg = image_file(40, 30, ImageFormat::Jpeg);
    let nothing_stored = async |what: &str| {
        assert_eq!(rows(&app, goods).await, 0, "{what} left a row");
        assert_eq!(
            store.objects.keys(&prefix).await,
            Vec::<String>::new(),
            "{what} left an object"
        );
    };

    let file = ("x.jpg", "image/jpeg", jpeg.as_slice());
    let b = expect_problem(
        upload(&app, goods, &other, file).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(b["type"].as_str().unwrap().ends_with("/not-owner"), "{b}");
    let b = expect_problem(
        upload(&app, goods, &customer, file).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        b["type"].as_str().unwrap().ends_with("/missing-role"),
        "{b}"
    );
    expect_problem(
        upload(&app, goods + 1000, &token, file).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    nothing_stored("a refused seller").await;

    let text = b"just some text, named like a photo".as_slice();
    let b = expect_problem(
        upload(&app, goods, &token, ("x.jpg", "image/jpeg", text)).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("not a JPEG, PNG or WebP"),
        "{b}"
    );
    let b = expect_problem(
        upload(&app, goods, &token, ("x.jpg", "image/jpeg", b"")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(b["detail"], "the file part is empty");
    let (ct, body) = multipart(&[("photo", "x.jpg", "image/jpeg", &jpeg)]);
    let b = expect_problem(
        upload_raw(&app, goods, &token, &ct, body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        b["detail"].as_str().unwrap().contains("no `file` part"),
        "{b}"
    );
    let b = expect_problem(
        upload_raw(&app, goods, &token, "image/jpeg", jpeg.clone()).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data"),
        "{b}"
    );
    let mut header_only = b"\x89PNG\r\n\x1a\n".to_vec();
    header_only.extend_from_slice(&[0; 64]);
    let b = expect_problem(
        upload(&app, goods, &token, ("x.png", "image/png", &header_only)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(b["detail"].as_str().unwrap().contains("PNG"), "{b}");
    // over the size limit: just over it, and far over the whole body limit
    for size in [64 * 1024 + 1, 1024 * 1024] {
        let mut big = jpeg.clone();
        big.resize(size, 0);
        let b = expect_problem(
            upload(&app, goods, &token, ("big.jpg", "image/jpeg", &big)).await,
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
        assert!(b["detail"].as_str().unwrap().contains("larger than"), "{b}");
    }
    nothing_stored("bad input").await;

    // the count limit (2 here): the third is refused, the first two stay
    for _ in 0..2 {
        assert_eq!(
            upload(&app, goods, &token, file).await.status(),
            StatusCode::CREATED
        );
    }
    let b = expect_problem(
        upload(&app, goods, &token, file).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("already have 2 images"),
        "{b}"
    );
    assert_eq!(rows(&app, goods).await, 2);
    let originals = store
        .objects
        .keys(&prefix)
        .await
        .into_iter()
        .filter(|k| !k.contains(".thumb."))
        .count();
    assert_eq!(originals, 2, "the refused third left an object");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn local_folder_upload_detail_thumbnail_etag_delete(pool: PgPool) {
    upload_flow(pool, local()).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn local_folder_refusals_store_nothing(pool: PgPool) {
    refusals(pool, local()).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn s3_upload_detail_thumbnail_etag_delete(pool: PgPool) {
    upload_flow(pool, s3().await).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn s3_refusals_store_nothing(pool: PgPool) {
    refusals(pool, s3().await).await;
}
