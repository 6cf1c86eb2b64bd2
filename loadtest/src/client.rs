//! The HTTP side: each VU owns one keep-alive HTTP/1.1 connection driven inside its own
//! task (as wrk and k6 VUs do: no shared pool, no lock, no extra task per request); a
//! pooled hyper-util client for side traffic (the InfluxDB writer); the base URL; and the
//! response scenarios look at. No TLS: load only goes to local targets.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::{self, Framing, Outgoing};

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

/// One VU's connection: a keep-alive HTTP/1.1 stream it reads and writes itself (the
/// codec is `wire`), inside the VU's own task, so no channel, background task or
/// cross-task wakeup is involved.
#[derive(Default)]
pub struct Conn {
    live: Option<Wire>,
}

/// A response head and its whole body.
pub type RawResponse = (http::response::Parts, Bytes);

/// An open connection between two exchanges; it exists only while no request is in
/// flight on it, so a request cut off by a timeout takes its connection with it.
struct Wire {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// When its last exchange ended (or it was opened).
    idle_since: Instant,
}

/// A connection idle this long is checked for the server's close before it carries a
/// request: a server's idle timeout (the app's is `FLOODGATE_HEADER_READ_TIMEOUT_MS`, 5 s) is
/// far longer, and a closed loop reuses its connection well within it, so that path costs
/// no extra system call.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Why an exchange failed, and whether any byte of an answer had come.
struct Failure {
    error: anyhow::Error,
    answered: bool,
}

impl Failure {
    fn before_answer(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            error: error.into(),
            answered: false,
        }
    }
}

impl Conn {
    /// Sends `req`, connecting first if there is no open connection, or if the open one sat
    /// idle for [`IDLE_CHECK`] or longer and the server has closed it meanwhile (a browser's
    /// check before reusing a socket; without it, the first request after a server's idle
    /// timeout failed unless it could be repeated). A request that fails on a reused keep-alive
    /// connection before any byte of an answer came (the server closed it just as the request
    /// went out) is sent once more on a fresh one if repeating it is safe: its method is
    /// idempotent or it carries an `Idempotency-Key`, Go's `net/http` rule (k6's client).
    pub async fn send(
        &mut self,
        target: &Target,
        req: &Outgoing<'_>,
    ) -> anyhow::Result<RawResponse> {
        let (wire, reused) = match self.live.take() {
            Some(w) if !w.closed_while_idle() => (w, true),
            _ => (Wire::connect(target).await?, false),
        };
        let outcome = match wire.exchange(req).await {
            Err(f) if reused && !f.answered && repeatable(req) => {
                Wire::connect(target).await?.exchange(req).await
            }
            other => other,
        };
        match outcome {
            Ok((resp, kept)) => {
                self.live = kept;
                Ok(resp)
            }
            Err(f) => Err(f.error),
        }
    }
}

/// May `req` be sent again after it failed without an answer? The server may have acted on
/// it, so only if doing it twice does the same as once.
fn repeatable(req: &Outgoing<'_>) -> bool {
    req.method.is_idempotent()
        || req
            .headers
            .iter()
            .any(|(name, _)| name.as_str() == "idempotency-key")
}

impl Wire {
    async fn connect(target: &Target) -> anyhow::Result<Wire> {
        let stream = TcpStream::connect(target.authority()).await?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
            idle_since: Instant::now(),
        })
    }

    /// After [`IDLE_CHECK`] of idleness: did the server close the connection (or write on it
    /// unasked, which leaves it unusable)? One non-blocking read tells: anything but "would
    /// block" means it cannot carry a request.
    fn closed_while_idle(&self) -> bool {
        if self.idle_since.elapsed() < IDLE_CHECK {
            return false;
        }
        let mut probe = [0u8; 1];
        !matches!(self.stream.try_read(&mut probe),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// One request and its answer; the connection comes back if it can carry the next.
    async fn exchange(
        mut self,
        req: &Outgoing<'_>,
    ) -> Result<(RawResponse, Option<Wire>), Failure> {
        wire::encode(req, &mut self.wbuf).map_err(Failure::before_answer)?;
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(Failure::before_answer)?;
        let mut answered = !self.rbuf.is_empty();
        let fail = |error: anyhow::Error, answered| Failure { error, answered };
        let head = loop {
            match wire::parse_head(&mut self.rbuf, req.method) {
                Ok(Some(h)) if h.interim => continue,
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => return Err(fail(e.into(), true)),
            }
            if self.fill().await.map_err(|e| fail(e, answered))? == 0 {
                let why = "connection closed by the server before an answer";
                return Err(fail(anyhow::anyhow!(why), answered));
            }
            answered = true;
        };
        let body = self.body(head.framing).await.map_err(|e| fail(e, true))?;
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = head.status;
        parts.version = head.version;
        parts.headers = head.headers;
        let kept = head.keep_alive.then(|| {
            self.idle_since = Instant::now();
            self
        });
        Ok(((parts, body), kept))
    }

    /// Reads what the socket has into the buffer; 0 at end of stream.
    async fn fill(&mut self) -> anyhow::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
            self.rbuf.reserve(READ_CHUNK);
        }
        Ok(self.stream.read_buf(&mut self.rbuf).await?)
    }

    async fn body(&mut self, framing: Framing) -> anyhow::Result<Bytes> {
        match framing {
            Framing::Length(n) => {
                while self.rbuf.len() < n {
                    self.rbuf.reserve(n - self.rbuf.len());
                    if self.fill().await? == 0 {
                        anyhow::bail!(
                            "connection closed {} bytes into a {n}-byte body",
                            self.rbuf.len()
                        );
                    }
                }
                Ok(self.rbuf.split_to(n).freeze())
            }
            Framing::Chunked => {
                let mut chunked = wire::Chunked::default();
                loop {
                    if let Some(body) = chunked.feed(&mut self.rbuf)? {
                        return Ok(body);
                    }
                    if self.fill().await? == 0 {
                        anyhow::bail!("connection closed inside a chunked body");
                    }
                }
            }
            Framing::UntilClose => {
                while self.fill().await? > 0 {}
                Ok(self.rbuf.split().freeze())
            }
        }
    }
}

/// Bytes asked of the socket per read: a whole answer of the bare server (~2.1 KB) or a
/// goods page fits.
const READ_CHUNK: usize = 16 * 1024;

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

    /// The last segment of a problem+json answer's `type` (`seat-taken`).
    pub fn problem_kind(&self) -> Option<String> {
        let kind = self.field("/type")?;
        kind.as_str()?.rsplit('/').next().map(String::from)
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
