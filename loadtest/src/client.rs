//! The HTTP side: a lean hyper-util client with a keep-alive pool (no TLS: load only goes to
//! local targets), the base URL, and the response type scenarios look at.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client; every VU shares it and reuses idle connections.
pub fn build_client() -> HttpClient {
    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    conn.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(usize::MAX)
        .build(conn)
}

/// The target: scheme and authority plus a path prefix that every request path joins.
#[derive(Clone, Debug)]
pub struct Target {
    base: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse()?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => anyhow::bail!("only http:// targets are supported, not {other}://"),
            None => anyhow::bail!("target {url:?} needs http://"),
        }
        anyhow::ensure!(uri.authority().is_some(), "target {url:?} needs a host");
        Ok(Target {
            base: url.trim_end_matches('/').to_string(),
        })
    }

    /// Joins `path` (which may carry a query) to the base.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        let sep = if path.starts_with('/') { "" } else { "/" };
        Ok(format!("{}{sep}{path}", self.base).parse()?)
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}

/// What a scenario gets back. Status 0 means the request never got an answer (connection
/// error or timeout), as in k6.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub error: Option<String>,
}

impl Response {
    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The JSON body, or `Null` when it is not JSON (checks then simply fail).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A field by JSON pointer (`/access_token`, `/items/0/id`).
    pub fn field(&self, pointer: &str) -> Option<serde_json::Value> {
        self.value().pointer(pointer).cloned()
    }

    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }
}
