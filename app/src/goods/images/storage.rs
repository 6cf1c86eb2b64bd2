//! The image store: every object goods images keep, behind `object_store` — a local folder
//! by default (`make run` needs nothing else), an S3 bucket when configured. Nothing else in
//! the app talks to the store.
//!
//! S3 requests are signed with `ring` and sent by [`super::s3_client`] (hyper-rustls on
//! `ring`), so the app carries one crypto stack.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, aws::AmazonS3Builder,
    local::LocalFileSystem, path::Path,
};
use secrecy::ExposeSecret;

use super::s3_client::RustlsConnector;

use crate::{
    config::{ImageSettings, ImageStoreKind},
    error::ApiError,
};

#[derive(Clone, Debug)]
pub struct ImageStore {
    inner: Arc<dyn ObjectStore>,
}

impl ImageStore {
    pub fn from_settings(settings: &ImageSettings) -> anyhow::Result<Self> {
        let inner: Arc<dyn ObjectStore> = match settings.image_store {
            ImageStoreKind::Local => {
                std::fs::create_dir_all(&settings.image_dir).map_err(|e| {
                    anyhow::anyhow!(
                        "FLOODGATE_IMAGE_DIR={}: cannot create the folder: {e}",
                        settings.image_dir.display()
                    )
                })?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(&settings.image_dir)?
                        .with_automatic_cleanup(true),
                )
            }
            ImageStoreKind::S3 => Arc::new(s3(settings)?),
        };
        Ok(Self { inner })
    }

    /// Stores `bytes` under `key` (replacing any object there).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ApiError> {
        self.inner
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// The object under `key`; `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ApiError> {
        match self.inner.get(&Path::from(key)).await {
            Ok(got) => got.bytes().await.map(Some).map_err(unavailable),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Deletes the object under `key` (nothing there is fine).
    pub async fn delete(&self, key: &str) -> Result<(), ApiError> {
        match self.inner.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The keys of every object under `prefix` (a path: `goods/4` does not list `goods/42`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        self.inner
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(unavailable)
    }

    /// Deletes every object under `prefix`; returns how many there were.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, ApiError> {
        let keys = self.list(prefix).await?;
        let paths: Vec<_> = keys.iter().map(|k| Ok(Path::from(k.as_str()))).collect();
        let paths = futures::stream::iter(paths).boxed();
        let deleted: Vec<_> = self.inner.delete_stream(paths).collect().await;
        for result in deleted {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(keys.len())
    }
}

fn s3(settings: &ImageSettings) -> anyhow::Result<object_store::aws::AmazonS3> {
    let bucket = settings.image_s3_bucket.as_deref().ok_or_else(|| {
        anyhow::anyhow!("FLOODGATE_IMAGE_STORE=s3 needs FLOODGATE_IMAGE_S3_BUCKET")
    })?;
    // from_env: the AWS environment's credential sources (web identity, container, instance)
    // when no keys are given
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_region(&settings.image_s3_region)
        .with_http_connector(RustlsConnector {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(20),
        })
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(8),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &settings.image_s3_endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if let (Some(id), Some(secret)) = (&settings.aws_access_key_id, &settings.aws_secret_access_key)
    {
        builder = builder
            .with_access_key_id(id.expose_secret())
            .with_secret_access_key(secret.expose_secret());
    }
    Ok(builder.build()?)
}

/// A store failure is the store's, not the client's: 503 + Retry-After, cause logged.
fn unavailable(e: object_store::Error) -> ApiError {
    tracing::warn!(error = %e, "image store call failed");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "storage-unavailable",
        "the image store is unavailable; retry shortly",
    )
    .retry_after(1)
}
