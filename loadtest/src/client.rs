//! The HTTP side: each VU owns one keep-alive HTTP/1.1 connection driven inside its own
//! task (as wrk and k6 VUs do: no shared pool, no lock, no extra task per request); a
//! pooled hyper-util client for side traffic (the InfluxDB writer); the base URL; and the
//! response scenarios look at. No TLS: load only goes to local targets.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{Either, select};
use http::{HeaderMap, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

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
    /// `host:port` to connect to and to send as `Host`.
    authority: String,
    /// Path prefix of the base URL (without trailing slash).
    prefix: String,
    host: http::HeaderValue,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url.parse()?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => anyhow::bail!("only http:// targets are supported, not {other}://"),
            None => anyhow::bail!("target {url:?} needs http://"),
        }
        let auth = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("target {url:?} needs a host"))?;
        let authority = match auth.port_u16() {
            Some(_) => auth.as_str().to_string(),
            None => format!("{}:80", auth.host()),
        };
        let prefix = uri.path().trim_end_matches('/').to_string();
        let host = http::HeaderValue::from_str(&authority)?;
        Ok(Target {
            base: url.trim_end_matches('/').to_string(),
            authority,
            prefix,
            host,
        })
    }

    /// The origin-form request target (`/prefix/path?query`) sent on a direct connection.
    pub fn origin_form(&self, path: &str) -> anyhow::Result<Uri> {
        let sep = if path.starts_with('/') { "" } else { "/" };
        Ok(format!("{}{sep}{path}", self.prefix).parse()?)
    }

    /// The `Host` header value, built once.
    pub fn host(&self) -> &http::HeaderValue {
        &self.host
    }

    pub fn authority(&self) -> &str {
        &self.authority
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

type Sender = http1::SendRequest<Full<Bytes>>;
type Driver = Pin<Box<http1::Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// One VU's connection. The connection future is polled only while a request is in flight,
/// together with that request, so no background task or cross-task wakeup is involved.
#[derive(Default)]
pub struct Conn {
    live: Option<(Sender, Driver)>,
}

/// A response head and its whole body.
pub type RawResponse = (http::response::Parts, Bytes);

impl Conn {
    async fn connect(target: &Target) -> anyhow::Result<(Sender, Driver)> {
        let stream = TcpStream::connect(target.authority()).await?;
        stream.set_nodelay(true)?;
        // One flat write per request: small requests gain nothing from writev's iovecs.
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await?;
        Ok((sender, Box::pin(conn)))
    }

    /// Sends `req`, reconnecting first if the connection is gone. A request that fails on a
    /// reused keep-alive connection before any answer is retried once on a fresh one, as
    /// browsers do with stale connections; `make` rebuilds the request for that.
    pub async fn send(
        &mut self,
        target: &Target,
        make: impl Fn() -> anyhow::Result<http::Request<Full<Bytes>>>,
    ) -> anyhow::Result<RawResponse> {
        let reused = self.live.as_ref().is_some_and(|(s, _)| !s.is_closed());
        match self.attempt(target, make()?).await {
            Err(_) if reused => self.attempt(target, make()?).await,
            other => other,
        }
    }

    async fn attempt(
        &mut self,
        target: &Target,
        req: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<RawResponse> {
        if self.live.as_ref().is_none_or(|(s, _)| s.is_closed()) {
            self.live = Some(Self::connect(target).await?);
        }
        let Some((sender, driver)) = self.live.as_mut() else {
            anyhow::bail!("no connection");
        };
        let exchange = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok((parts, body))
        };
        let outcome = match select(std::pin::pin!(exchange), driver.as_mut()).await {
            Either::Left((r, _)) => r,
            Either::Right((ended, _)) => Err(match ended {
                Ok(()) => anyhow::anyhow!("connection closed by the server"),
                Err(e) => e.into(),
            }),
        };
        if outcome.is_err() {
            self.live = None;
        }
        outcome
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
    /// A request that never got an answer.
    pub fn failed(error: String) -> Response {
        Response {
            status: 0,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            error: Some(error),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_authority_and_prefix() {
        let t = Target::parse("http://127.0.0.1:8080/base/").expect("target");
        assert_eq!(t.authority(), "127.0.0.1:8080");
        assert_eq!(
            t.origin_form("/api/v1/goods?limit=15").expect("uri"),
            "/base/api/v1/goods?limit=15"
        );
        assert_eq!(
            Target::parse("http://localhost")
                .expect("target")
                .authority(),
            "localhost:80"
        );
        assert!(Target::parse("https://x").is_err());
        assert!(Target::parse("127.0.0.1:80").is_err());
    }
}
