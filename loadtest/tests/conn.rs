//! The generator's own HTTP/1.1 connection (`client::Conn` over `wire`) against real
//! servers: hyper's (through axum) for every body framing and for the request it writes, and
//! raw sockets for a server that closes an idle keep-alive connection or never answers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method as AxMethod};
use axum::routing::{any, get};
use floodgate_loadtest::client::{Conn, Target};
use floodgate_loadtest::wire::Outgoing;
use http::{HeaderName, HeaderValue, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn request<'a>(
    target: &'a Target,
    method: &'a Method,
    path: &'a str,
    body: Option<&'a [u8]>,
) -> Outgoing<'a> {
    Outgoing {
        method,
        target: path,
        host: target.host(),
        headers: &[],
        bearer: None,
        body,
    }
}

async fn echo(method: AxMethod, headers: HeaderMap, body: Bytes) -> String {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    format!(
        "{method} ct={} auth={} key={} host={} body={}",
        h("content-type"),
        h("authorization"),
        h("idempotency-key"),
        h("host"),
        String::from_utf8_lossy(&body)
    )
}

fn hyper_side() -> Router {
    Router::new()
        .route("/echo", any(echo))
        .route(
            "/chunked",
            get(|| async {
                let parts = ["first,", "second,", "third"].map(Ok::<_, std::io::Error>);
                Body::from_stream(futures::stream::iter(parts))
            }),
        )
        .route(
            "/close",
            get(|| async { ([(http::header::CONNECTION, "close")], "bye") }),
        )
        .route("/empty", get(|| async { http::StatusCode::NO_CONTENT }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow"
            }),
        )
}

#[tokio::test]
async fn every_framing_and_the_written_request_work_against_hyper() {
    let addr = common::serve(hyper_side()).await;
    let target = Target::parse(&format!("http://{addr}")).expect("target");
    let mut conn = Conn::default();

    let extra = [(
        HeaderName::from_static("idempotency-key"),
        HeaderValue::from_static("k-7"),
    )];
    let post = Outgoing {
        headers: &extra,
        bearer: Some("t0k.en"),
        ..request(&target, &Method::POST, "/echo", Some(b"{\"n\":1}"))
    };
    let (parts, body) = conn.send(&target, &post).await.expect("post");
    assert_eq!(parts.status, 200);
    assert_eq!(
        &body[..],
        format!("POST ct=application/json auth=Bearer t0k.en key=k-7 host={addr} body={{\"n\":1}}")
            .as_bytes()
    );
    let empty_delete = request(&target, &Method::DELETE, "/echo", None);
    let (_, body) = conn.send(&target, &empty_delete).await.expect("delete");
    assert!(body.starts_with(b"DELETE ct=- auth=- key=-"), "{body:?}");

    let (parts, body) = conn
        .send(&target, &request(&target, &Method::GET, "/chunked", None))
        .await
        .expect("chunked");
    assert_eq!(
        parts.headers.get("transfer-encoding").map(|v| v.as_bytes()),
        Some(&b"chunked"[..]),
        "axum streams this body chunked"
    );
    assert_eq!(&body[..], b"first,second,third");

    let (parts, body) = conn
        .send(&target, &request(&target, &Method::GET, "/empty", None))
        .await
        .expect("204");
    assert_eq!((parts.status.as_u16(), body.len()), (204, 0));

    let (_, body) = conn
        .send(&target, &request(&target, &Method::GET, "/close", None))
        .await
        .expect("close");
    assert_eq!(&body[..], b"bye");
    // the server closed that connection; the next request opens a new one by itself
    let (_, body) = conn
        .send(&target, &request(&target, &Method::GET, "/echo", None))
        .await
        .expect("after close");
    assert!(body.starts_with(b"GET "), "{body:?}");
}

#[tokio::test]
async fn a_request_cut_off_by_a_timeout_never_reads_its_late_answer() {
    let addr = common::serve(hyper_side()).await;
    let target = Target::parse(&format!("http://{addr}")).expect("target");
    let mut conn = Conn::default();
    let slow = request(&target, &Method::GET, "/slow", None);
    let cut = tokio::time::timeout(Duration::from_millis(50), conn.send(&target, &slow)).await;
    assert!(cut.is_err(), "the slow answer takes 300 ms");
    let (_, body) = conn
        .send(&target, &request(&target, &Method::GET, "/echo", None))
        .await
        .expect("next request");
    assert!(
        body.starts_with(b"GET "),
        "the next request got its own answer, not the late one: {body:?}"
    );
}

/// A raw server that reads each connection's first request, writes `answer(n)` (n: the
/// connection's number, from 1) and closes it without saying so, as a server whose
/// keep-alive timeout ran out does; it counts the connections.
async fn raw_server(answer: fn(usize) -> String) -> (Target, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target =
        Target::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("target");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer(n).as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (target, accepted)
}

/// Answers `conn N` on the server's Nth connection.
fn numbered(n: usize) -> String {
    let body = format!("conn {n}");
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Under the client's idle check (100 ms): the server's close is found only when the request
/// fails, as when it closes just as a request goes out.
const SHORT_IDLE: Duration = Duration::from_millis(10);

#[tokio::test]
async fn a_keep_alive_connection_closed_while_idle_is_replaced_once_when_repeating_is_safe() {
    let (target, accepted) = raw_server(numbered).await;
    let mut conn = Conn::default();
    let get = request(&target, &Method::GET, "/", None);
    let (_, first) = conn.send(&target, &get).await.expect("first");
    assert_eq!(&first[..], b"conn 1");
    tokio::time::sleep(SHORT_IDLE).await;
    let (_, second) = conn
        .send(&target, &get)
        .await
        .expect("retried on a new connection");
    assert_eq!(&second[..], b"conn 2");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // a POST is sent again only with an Idempotency-Key: the server may have acted on it
    tokio::time::sleep(SHORT_IDLE).await;
    let post = request(&target, &Method::POST, "/", Some(b"{}"));
    conn.send(&target, &post).await.expect_err("not repeated");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "no new connection for it"
    );
    let (_, third) = conn.send(&target, &get).await.expect("on a new connection");
    assert_eq!(&third[..], b"conn 3");
    tokio::time::sleep(SHORT_IDLE).await;
    let key = [(
        HeaderName::from_static("idempotency-key"),
        HeaderValue::from_static("k-1"),
    )];
    let keyed = Outgoing {
        headers: &key,
        ..request(&target, &Method::POST, "/", Some(b"{}"))
    };
    let (_, fourth) = conn.send(&target, &keyed).await.expect("keyed: repeated");
    assert_eq!(&fourth[..], b"conn 4");
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_connection_the_server_closed_during_a_longer_idle_is_not_used_for_any_request() {
    let (target, accepted) = raw_server(numbered).await;
    let mut conn = Conn::default();
    let post = request(&target, &Method::POST, "/", Some(b"{}"));
    let (_, first) = conn.send(&target, &post).await.expect("first");
    assert_eq!(&first[..], b"conn 1");
    // past the idle check: the close is seen before the request goes out, so even a POST
    // without an Idempotency-Key (a waiting-room join) goes out on a new connection
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, second) = conn
        .send(&target, &post)
        .await
        .expect("on a new connection");
    assert_eq!(&second[..], b"conn 2");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_broken_answer_fails_the_request_with_its_reason_and_no_retry() {
    // a broken answer: a head with two different lengths
    let (target, accepted) = raw_server(|_| {
        "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab".into()
    })
    .await;
    let mut conn = Conn::default();
    let get = request(&target, &Method::GET, "/", None);
    let err = conn.send(&target, &get).await.expect_err("refused");
    assert_eq!(err.to_string(), "conflicting Content-Length values");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a fresh connection is not retried"
    );
}
