//! The HTTP ceiling of PERFORMANCE.md: a bare axum server answering every path with a
//! pre-serialized JSON body of a chosen size, so a workload's figure can be read against
//! what this machine's HTTP stack does with no application work at all.
//!
//! With a Redis URL it is the floor of a read that must ask Redis (#18): the body is stored
//! in Redis at start and every answer is one `GET` of it over one multiplexed connection
//! (redis-rs's `ConnectionManager`, as the app's single-node mode uses), still with no
//! application work. A cached goods read, a waiting-room poll or a sold-out refusal each
//! make at least that one round trip, so this rate bounds theirs on the same machine.

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::net::TcpListener;

/// The Redis key the floor server stores its body under and reads on every request.
pub const REDIS_KEY: &str = "floodgate-ceiling:body";

/// A JSON object of exactly `size` bytes (at least `{"d":""}`), built once.
pub fn body(size: usize) -> Bytes {
    let frame = r#"{"d":""}"#.len();
    let pad = size.saturating_sub(frame);
    Bytes::from(format!(r#"{{"d":"{}"}}"#, "x".repeat(pad)))
}

pub fn router(size: usize) -> Router {
    let body = body(size);
    Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(CONTENT_TYPE, "application/json")], body).into_response() }
    })
}

/// Every answer is the body read from Redis with one `GET` ([`REDIS_KEY`]); a Redis error
/// answers 503, so a run against a failing Redis shows failures instead of a rate.
pub fn redis_router(conn: ConnectionManager) -> Router {
    Router::new().fallback(move || {
        let mut conn = conn.clone();
        async move {
            let read: redis::RedisResult<Option<Bytes>> = redis::cmd("GET")
                .arg(REDIS_KEY)
                .query_async(&mut conn)
                .await;
            match read {
                Ok(Some(body)) => ([(CONTENT_TYPE, "application/json")], body).into_response(),
                Ok(None) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "the body is not in Redis").into_response()
                }
                Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
            }
        }
    })
}

/// Serves until the process ends: the bare ceiling, or with `redis_url` the Redis-read floor
/// (the body stored in Redis first).
pub async fn serve(
    listener: TcpListener,
    size: usize,
    redis_url: Option<&str>,
) -> anyhow::Result<()> {
    let router = match redis_url {
        None => router(size),
        Some(url) => {
            let mut conn = redis::Client::open(url)?.get_connection_manager().await?;
            let _: () = redis::cmd("SET")
                .arg(REDIS_KEY)
                .arg(body(size).as_ref())
                .query_async(&mut conn)
                .await?;
            redis_router(conn)
        }
    };
    axum::serve(listener, router).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_requested_size_and_is_json() {
        for size in [0, 8, 9, 200, 4096] {
            let b = body(size);
            assert_eq!(b.len(), size.max(8));
            let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
            assert!(v["d"].is_string());
        }
    }
}
