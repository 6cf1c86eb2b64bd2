//! HTTP/1.1 as the generator speaks it on its own connections, as pure functions over
//! buffers: a request written in one pass into a reused buffer, a response head parsed in
//! place (httparse), and the body framed as RFC 9112 §6 says (no body for HEAD, 1xx, 204 and
//! 304; `chunked`; `Content-Length`; otherwise until the server closes). `client::Conn` does
//! the reads and writes. wrk works the same way. hyper's client connection added a channel, a
//! callback and a request object per request: without them the generator's user-space CPU
//! per request against the bare server fell from 3.8 to 2.2 µs (#18, P6).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

/// Most response headers read; a response with more is refused, as hyper refuses >100.
const MAX_HEADERS: usize = 64;
/// Longest response head accepted, so offsets into it fit a `u16` (hyper's default read
/// buffer limit is ~400 KB; no server this generator targets sends heads near either).
pub const MAX_HEAD_BYTES: usize = u16::MAX as usize;

/// What is wrong with a response (or a request that cannot be written).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("invalid response head: {0}")]
    Head(String),
    #[error("response head longer than {MAX_HEAD_BYTES} bytes")]
    HeadTooLong,
    #[error("conflicting Content-Length values")]
    ConflictingLength,
    #[error("invalid Content-Length {0:?}")]
    BadLength(String),
    #[error("unsupported Transfer-Encoding {0:?} (only chunked is understood)")]
    BadTransferEncoding(String),
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
    #[error("protocol switch (101) is not supported")]
    Upgrade,
    #[error("the bearer token holds a byte a header cannot carry")]
    BadToken,
}

/// A request to write: everything borrowed from the VU, nothing built per request.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// The origin-form target (`/path?query`), already validated as a URI.
    pub target: &'a str,
    pub host: &'a HeaderValue,
    pub headers: &'a [(HeaderName, HeaderValue)],
    pub bearer: Option<&'a str>,
    pub body: Option<&'a [u8]>,
}

/// Writes `req` into `out` (cleared first). A JSON body gets `content-type:
/// application/json`; every request with a body, and every POST, PUT or PATCH, gets its
/// `content-length` (0 when empty), as hyper sent them.
pub fn encode(req: &Outgoing<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(req.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    if req.body.is_some() {
        out.extend_from_slice(b"content-type: application/json\r\n");
    }
    if let Some(token) = req.bearer {
        // the same bytes `HeaderValue::from_str` accepts: visible ASCII, space and tab
        if !token
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(WireError::BadToken);
        }
        out.extend_from_slice(b"authorization: Bearer ");
        out.extend_from_slice(token.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in req.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let sends_length =
        req.body.is_some() || matches!(*req.method, Method::POST | Method::PUT | Method::PATCH);
    if sends_length {
        let len = req.body.map_or(0, <[u8]>::len);
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(body) = req.body {
        out.extend_from_slice(body);
    }
    Ok(())
}

/// How the body after a head ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0 for HEAD, 1xx, 204 and 304).
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection can carry the next request once this body is read.
    pub keep_alive: bool,
    /// An interim (1xx) answer: skip it, the final one follows.
    pub interim: bool,
}

/// Parses the head at the front of `buf`: `Ok(None)` until it is complete, else the head,
/// taken off the front of `buf` (its header values point into that memory, not copies).
pub fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, WireError> {
    // left uninitialised: httparse writes the ones it fills (2 KB not cleared per answer)
    let mut slots = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(WireError::HeadTooLong);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(WireError::Head(e.to_string())),
    };
    if len > MAX_HEAD_BYTES {
        return Err(WireError::HeadTooLong);
    }
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Head(format!("status {code}")))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // where each name and value sits in the head (which fits u16 offsets), so the values
    // can share its memory
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        [start as u16, (start + s.len()) as u16]
    };
    let mut spans = [[0u16; 4]; MAX_HEADERS];
    let count = resp.headers.len();
    for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
        let ([ns, ne], [vs, ve]) = (at(h.name.as_bytes()), at(h.value));
        *span = [ns, ne, vs, ve];
    }
    let raw = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &[ns, ne, vs, ve] in &spans[..count] {
        let name_bytes = &raw[usize::from(ns)..usize::from(ne)];
        let name = HeaderName::from_bytes(name_bytes)
            .map_err(|_| WireError::Head(format!("header name {name_bytes:?}")))?;
        let value = HeaderValue::from_maybe_shared(raw.slice(usize::from(vs)..usize::from(ve)))
            .map_err(|_| WireError::Head(format!("value of {name}")))?;
        headers.append(name, value);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(WireError::Upgrade);
    }
    let interim = status.is_informational();
    let framing = framing(&headers, status, method)?;
    let keep_alive = framing != Framing::UntilClose && persistent(&headers, version);
    Ok(Some(Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
        interim,
    }))
}

fn framing(headers: &HeaderMap, status: StatusCode, method: &Method) -> Result<Framing, WireError> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Length(0));
    }
    if let Some(te) = headers.get(http::header::TRANSFER_ENCODING) {
        let te = te.to_str().unwrap_or("");
        let last = te.rsplit(',').next().unwrap_or("").trim();
        return if last.eq_ignore_ascii_case("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(WireError::BadTransferEncoding(te.to_string()))
        };
    }
    let mut length = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        for part in v.to_str().unwrap_or("?").split(',') {
            let part = part.trim();
            let n = part
                .parse::<usize>()
                .ok()
                .filter(|_| part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| WireError::BadLength(part.to_string()))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::ConflictingLength);
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only with `keep-alive`.
fn persistent(headers: &HeaderMap, version: Version) -> bool {
    let has = |token: &str| {
        headers.get_all(http::header::CONNECTION).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        })
    };
    if version == Version::HTTP_10 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
    body: BytesMut,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a size line.
    #[default]
    Size,
    /// This many data bytes to come, then CRLF.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty line.
    Trailers,
    Done,
}

/// A size line or a trailer line longer than this is refused.
const MAX_LINE: usize = 4096;

impl Chunked {
    /// Decodes what `buf` holds, taking it off the front. `Ok(Some(body))` once the last
    /// chunk and the trailers are in; `Ok(None)` when more bytes are needed.
    pub fn feed(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    let digits = line[..].split(|b| *b == b';').next().unwrap_or(&[]);
                    let digits = std::str::from_utf8(digits)
                        .map_err(|_| WireError::Chunk("size is not hex"))?
                        .trim_matches([' ', '\t']);
                    if digits.is_empty() || digits.len() > 15 {
                        return Err(WireError::Chunk("size is not hex"));
                    }
                    let size = usize::from_str_radix(digits, 16)
                        .map_err(|_| WireError::Chunk("size is not hex"))?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(buf.len());
                    self.body.extend_from_slice(&buf.split_to(n));
                    self.state = if n == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n)
                    };
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunk("no CRLF after a chunk's data"));
                    }
                    let _ = buf.split_to(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Some(std::mem::take(&mut self.body).freeze())),
            }
        }
    }
}

/// The next CRLF-terminated line without its CRLF, taken off `buf`; `None` if incomplete.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) => {
            let line = buf.split_to(i);
            let _ = buf.split_to(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(WireError::Chunk("line too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: &Method) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(text), method)
    }

    #[test]
    fn requests_are_written_as_hyper_wrote_them() {
        let host = HeaderValue::from_static("127.0.0.1:8080");
        let extra = [(
            HeaderName::from_static("idempotency-key"),
            HeaderValue::from_static("k-1"),
        )];
        let mut out = Vec::new();
        let req = Outgoing {
            method: &Method::POST,
            target: "/api/v1/orders?x=1",
            host: &host,
            headers: &extra,
            bearer: Some("abc.def"),
            body: Some(b"{\"a\":1}"),
        };
        encode(&req, &mut out).expect("encode");
        assert_eq!(
            String::from_utf8(out.clone()).expect("utf8"),
            "POST /api/v1/orders?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\
             content-type: application/json\r\nauthorization: Bearer abc.def\r\n\
             idempotency-key: k-1\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
        let get = Outgoing {
            method: &Method::GET,
            target: "/",
            host: &host,
            headers: &[],
            bearer: None,
            body: None,
        };
        encode(&get, &mut out).expect("encode");
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n");
        let empty_post = Outgoing {
            method: &Method::POST,
            body: None,
            ..get
        };
        encode(&empty_post, &mut out).expect("encode");
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));
        let smuggled = Outgoing {
            bearer: Some("x\r\nhost: evil"),
            ..get
        };
        assert_eq!(encode(&smuggled, &mut out), Err(WireError::BadToken));
    }

    #[test]
    fn heads_are_parsed_in_place_and_framed() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello",
        );
        let h = parse_head(&mut buf, &Method::POST)
            .expect("valid")
            .expect("complete");
        assert_eq!(h.status, StatusCode::CREATED);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive && !h.interim);
        let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(&buf[..], b"hello", "the head is taken off the front");

        assert!(
            head("HTTP/1.1 200 OK\r\nContent-Len", &Method::GET)
                .expect("partial")
                .is_none()
        );
        let f = |text: &str, m: &Method| head(text, m).expect("valid").expect("complete");
        let chunked = f(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            &Method::GET,
        );
        assert_eq!(chunked.framing, Framing::Chunked);
        let close = f("HTTP/1.1 200 OK\r\n\r\n", &Method::GET);
        assert_eq!(close.framing, Framing::UntilClose);
        assert!(!close.keep_alive);
        let head_req = f(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!(head_req.framing, Framing::Length(0));
        for s in ["204 No Content", "304 Not Modified"] {
            let h = f(&format!("HTTP/1.1 {s}\r\n\r\n"), &Method::GET);
            assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
        }
        let cont = f("HTTP/1.1 100 Continue\r\n\r\n", &Method::POST);
        assert!(cont.interim);
        let closing = f(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        );
        assert!(!closing.keep_alive);
        let old = f("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &Method::GET);
        assert!(!old.keep_alive);
        let old_kept = f(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        );
        assert!(old_kept.keep_alive);
        let same_twice = f(
            "HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n",
            &Method::GET,
        );
        assert_eq!(same_twice.framing, Framing::Length(4));
    }

    #[test]
    fn bad_heads_are_refused_with_the_reason() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
                WireError::ConflictingLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +4\r\n\r\n",
                WireError::BadLength("+4".into()),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                WireError::BadTransferEncoding("gzip".into()),
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                WireError::Upgrade,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(head(text, &Method::GET).expect_err(text), want, "{text}");
        }
        assert!(matches!(
            head("HTTP/1.1 2x0 OK\r\n\r\n", &Method::GET),
            Err(WireError::Head(_))
        ));
        let long = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            head(&long, &Method::GET).expect_err("too long"),
            WireError::HeadTooLong
        );
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for cut in 0..wire.len() {
            let mut c = Chunked::default();
            let mut buf = BytesMut::from(&wire[..cut]);
            let first = c.feed(&mut buf).expect("valid so far");
            buf.extend_from_slice(&wire[cut..]);
            let body = match first {
                Some(b) => b,
                None => c.feed(&mut buf).expect("valid").expect("complete"),
            };
            assert_eq!(&body[..], b"hello, world", "cut at {cut}");
            assert_eq!(&buf[..], b"NEXT", "cut at {cut}: the next answer stays");
        }
        for (bad, why) in [
            (&b"zz\r\n"[..], "size is not hex"),
            (b"\r\n", "size is not hex"),
            (b"3\r\nabcX\r\n", "no CRLF after a chunk's data"),
        ] {
            let mut buf = BytesMut::from(bad);
            assert_eq!(
                Chunked::default().feed(&mut buf),
                Err(WireError::Chunk(why))
            );
        }
    }
}
