//! The HTTP ceiling of PERFORMANCE.md: a bare axum server answering every path with a
//! pre-serialized JSON body of a chosen size, so a workload's figure can be read against
//! what this machine's HTTP stack does with no application work at all.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use bytes::Bytes;
use tokio::net::TcpListener;

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

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, size: usize) -> std::io::Result<()> {
    axum::serve(listener, router(size)).await
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
