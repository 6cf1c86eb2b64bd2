//! The Redis side of act: the memory settings (`CONFIG SET`) and the runtime document
//! (`<prefix>config`, compare-and-set, publish, applied-by count). One multiplexed
//! `ConnectionManager` that reconnects by itself after a Redis restart.

pub mod memory;
pub mod runtime_doc;

use std::sync::{Arc, atomic::AtomicU64};

use std::path::PathBuf;

use redis::{
    Client, ClientTlsConfig, ErrorKind, RedisError, RedisResult, TlsCertificates,
    aio::ConnectionManager,
};

/// TLS for a `rediss://` URL: the CA bundle to trust instead of the system's roots and a
/// client certificate, all PEM files (the app's FLOODGATE_REDIS_* settings).
#[derive(Clone, Debug, Default)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl RedisTls {
    /// The client for `url` with these files applied.
    pub fn client(&self, url: &str) -> RedisResult<Client> {
        let tls = self.ca_file.is_some() || self.client_cert_file.is_some();
        if tls && !url.starts_with("rediss") {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Redis TLS files are set but the URL is not rediss://",
                url.to_owned(),
            )));
        }
        if !tls {
            return Client::open(url);
        }
        let client_tls = match (&self.client_cert_file, &self.client_key_file) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            (None, None) => None,
            _ => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "a Redis client certificate needs both its file and its key",
                )));
            }
        };
        let root_cert = self.ca_file.as_ref().map(|p| read(p)).transpose()?;
        Client::build_with_tls(
            url,
            TlsCertificates {
                client_tls,
                root_cert,
            },
        )
    }
}

fn read(path: &std::path::Path) -> RedisResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        RedisError::from((
            ErrorKind::InvalidClientConfig,
            "cannot read a Redis TLS file",
            format!("{}: {e}", path.display()),
        ))
    })
}

/// A Redis plus the key prefix the app uses in it.
#[derive(Clone)]
pub struct RedisTarget {
    pub conn: ConnectionManager,
    pub prefix: String,
    /// The highest runtime-document version this process wrote or read (shared by clones),
    /// so a lost document is re-asserted above it ([`runtime_doc::publish`]).
    pub last_version: Arc<AtomicU64>,
}

impl RedisTarget {
    pub async fn connect(url: &str, prefix: &str) -> redis::RedisResult<Self> {
        Self::connect_tls(url, &RedisTls::default(), prefix).await
    }

    pub async fn connect_tls(url: &str, tls: &RedisTls, prefix: &str) -> RedisResult<Self> {
        let client = tls.client(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            last_version: Arc::default(),
        })
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Real-Redis test helpers: `REDIS_URL` (default `redis://127.0.0.1:63799`), a unique
    //! prefix per test, and a failure (not a skip) when Redis is unreachable.

    use super::RedisTarget;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Settings on the shared Redis are global: tests that change or compare them hold this
    /// (and put old values back).
    pub static CONFIG_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    pub fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:63799".to_owned())
    }

    pub fn unique_prefix(test: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "fgtest:{}:{}:{test}:",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub async fn target(test: &str) -> RedisTarget {
        RedisTarget::connect(&url(), &unique_prefix(test))
            .await
            .unwrap_or_else(|e| panic!("Redis at {} is required for this test: {e}", url()))
    }
}
