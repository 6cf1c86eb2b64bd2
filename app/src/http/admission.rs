//! Admission: what the API holds at once is bounded by request count *and* by bytes, and
//! the excess is shed at the door — 503 `overloaded` problem+json with `Retry-After`, before
//! routing, extractors or any body byte is read.
//!
//! A request is charged, in bytes, its head (method, target, headers), its body (the declared
//! `Content-Length`, or the whole body limit when the length is not declared) and a fixed
//! [`REQUEST_OVERHEAD`] for its handler's state and response. Both permits are held until the
//! response is produced or the request is dropped (client gone, timeout), so a slow body —
//! a client sending 64 KiB a byte at a time — holds its bytes for as long as it takes, and
//! many of them are refused instead of buffered.
//!
//! Only `/api/` paths are admitted here: the operations routes (`/livez`, `/readyz`,
//! `/metrics`) answer even when the API is saturated.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use crate::error::ApiError;

/// What a request is charged beyond its head and body: the handler's state, the response it
/// builds (a cached goods page is a few KiB) and the per-request bookkeeping.
pub const REQUEST_OVERHEAD: usize = 8 * 1024;

/// The admission limits (`FLOODGATE_MAX_IN_FLIGHT`, `FLOODGATE_MAX_IN_FLIGHT_BYTES`,
/// `FLOODGATE_BODY_LIMIT_BYTES`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_in_flight: usize,
    pub max_in_flight_bytes: usize,
    pub body_limit: usize,
    /// The body limit of an image upload (`POST /api/v1/goods/{id}/images`), which is
    /// charged like any body, up to this limit instead of `body_limit`.
    pub upload_body_limit: usize,
}

impl Limits {
    /// The body limit that applies to `req`: the upload's for an image upload.
    pub fn body_limit_of<B>(&self, req: &Request<B>) -> usize {
        let path = req.uri().path();
        let upload = req.method() == axum::http::Method::POST
            && path.starts_with("/api/v1/goods/")
            && path.ends_with("/images");
        if upload {
            self.upload_body_limit.max(self.body_limit)
        } else {
            self.body_limit
        }
    }
}

/// The bytes a request is charged on admission (see the module docs).
pub fn charge<B>(req: &Request<B>, body_limit: usize) -> usize {
    let head = req.method().as_str().len()
        + req.uri().path_and_query().map_or(1, |p| p.as_str().len())
        + req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let body = match declared {
        Some(n) => n.min(body_limit),
        // no length: a body may follow (chunked), as large as the limit lets it be
        None if req.headers().contains_key(header::TRANSFER_ENCODING) => body_limit,
        None => 0,
    };
    head + body + REQUEST_OVERHEAD
}

/// The shared budgets; clones share them.
#[derive(Clone)]
pub struct AdmissionLayer {
    budget: Arc<Budget>,
}

struct Budget {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    limits: Limits,
}

impl AdmissionLayer {
    pub fn new(limits: Limits) -> Self {
        let limits = Limits {
            max_in_flight: limits.max_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            // one request's charge is acquired as a u32
            max_in_flight_bytes: limits.max_in_flight_bytes.clamp(1, u32::MAX as usize),
            ..limits
        };
        Self {
            budget: Arc::new(Budget {
                requests: Arc::new(Semaphore::new(limits.max_in_flight)),
                bytes: Arc::new(Semaphore::new(limits.max_in_flight_bytes)),
                limits,
            }),
        }
    }

    /// Requests and bytes admitted right now (for tests).
    pub fn in_use(&self) -> (usize, usize) {
        let b = &self.budget;
        (
            b.limits.max_in_flight - b.requests.available_permits(),
            b.limits.max_in_flight_bytes - b.bytes.available_permits(),
        )
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            budget: self.budget.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    budget: Arc<Budget>,
}

/// The permits an admitted request holds until it answers or is dropped.
pub struct Admitted {
    _request: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

impl Budget {
    fn admit<B>(&self, req: &Request<B>) -> Result<Admitted, ApiError> {
        let overloaded = |what: &str| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("the server is at capacity ({what}); retry shortly"),
            )
            .retry_after(1)
        };
        let cost = charge(req, self.limits.body_limit_of(req)).min(self.limits.max_in_flight_bytes);
        let request = self
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| overloaded("requests in flight"))?;
        let bytes = self
            .bytes
            .clone()
            .try_acquire_many_owned(cost as u32)
            .map_err(|_| overloaded("request bytes in flight"))?;
        Ok(Admitted {
            _request: request,
            _bytes: bytes,
        })
    }
}

impl<S> Service<Request> for Admission<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AdmissionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !req.uri().path().starts_with("/api/") {
            return AdmissionFuture::Admitted {
                fut: self.inner.call(req),
                permits: None,
            };
        }
        match self.budget.admit(&req) {
            Ok(permits) => AdmissionFuture::Admitted {
                fut: self.inner.call(req),
                permits: Some(permits),
            },
            Err(e) => AdmissionFuture::Shed {
                res: Some(e.into_response()),
            },
        }
    }
}

pin_project! {
    #[project = AdmissionProj]
    pub enum AdmissionFuture<F> {
        Admitted { #[pin] fut: F, permits: Option<Admitted> },
        Shed { res: Option<Response> },
    }
}

impl<F> Future for AdmissionFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmissionProj::Admitted { fut, permits } => {
                let res = std::task::ready!(fut.poll(cx));
                permits.take();
                Poll::Ready(res)
            }
            AdmissionProj::Shed { res } => Poll::Ready(Ok(res
                .take()
                .expect("AdmissionFuture polled after completion"))),
        }
    }
}

/// The request trace's failure log: 5xx at ERROR, except 503. Every 503 is an expected
/// refusal (shed here, a timeout, an open breaker, a full bulkhead), counted in the metrics;
/// logged one line each at ERROR, a 20-minute overload wrote 3.8 GB of logs.
pub fn log_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass as Class;
    let latency_ms = latency.as_millis() as u64;
    match class {
        Class::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "response failed: 503")
        }
        other => tracing::error!(classification = %other, latency_ms, "response failed"),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn req(body: Option<usize>, chunked: bool) -> Request<Body> {
        let mut b = Request::post("/api/v1/auth/login");
        if let Some(n) = body {
            b = b.header(header::CONTENT_LENGTH, n);
        }
        if chunked {
            b = b.header(header::TRANSFER_ENCODING, "chunked");
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn a_request_is_charged_its_head_body_and_overhead() {
        let bare = charge(&req(None, false), 65_536);
        assert!(bare > REQUEST_OVERHEAD && bare < REQUEST_OVERHEAD + 100);
        let header = |name: &str, value: &str| name.len() + value.len() + 4;
        assert_eq!(
            charge(&req(Some(1_000), false), 65_536),
            bare + 1_000 + header("content-length", "1000")
        );
        // declared beyond the limit: charged the limit (the body limit refuses it anyway)
        assert_eq!(
            charge(&req(Some(10_000_000), false), 65_536),
            bare + 65_536 + header("content-length", "10000000")
        );
        // a chunked body may be as large as the limit
        assert_eq!(
            charge(&req(None, true), 65_536),
            bare + 65_536 + header("transfer-encoding", "chunked")
        );
    }

    #[test]
    fn an_image_upload_is_charged_up_to_the_upload_limit() {
        let limits = Limits {
            max_in_flight: 1,
            max_in_flight_bytes: 1,
            body_limit: 65_536,
            upload_body_limit: 5_000_000,
        };
        let with_len = |method: &str, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .header(header::CONTENT_LENGTH, 3_000_000)
                .body(Body::empty())
                .unwrap()
        };
        let upload = with_len("POST", "/api/v1/goods/42/images");
        assert_eq!(limits.body_limit_of(&upload), 5_000_000);
        assert!(charge(&upload, limits.body_limit_of(&upload)) > 3_000_000);
        for (method, path) in [
            ("POST", "/api/v1/goods"),
            ("GET", "/api/v1/goods/42/images"),
            ("POST", "/api/v1/orders/images"),
        ] {
            let other = with_len(method, path);
            assert_eq!(limits.body_limit_of(&other), 65_536, "{method} {path}");
        }
    }

    #[test]
    fn the_byte_budget_sheds_what_the_count_would_admit() {
        let layer = AdmissionLayer::new(Limits {
            max_in_flight: 1_000,
            max_in_flight_bytes: 4 * (65_536 + REQUEST_OVERHEAD + 200),
            body_limit: 65_536,
            upload_body_limit: 65_536,
        });
        let big = req(Some(65_536), false);
        let held: Vec<_> = (0..4)
            .map(|_| layer.budget.admit(&big).expect("within budget"))
            .collect();
        let refused = layer
            .budget
            .admit(&big)
            .err()
            .expect("over the byte budget");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(layer.in_use().0, 4);
        drop(held);
        assert_eq!(
            layer.in_use(),
            (0, 0),
            "permits come back when requests end"
        );
    }

    #[test]
    fn the_count_sheds_small_requests() {
        let layer = AdmissionLayer::new(Limits {
            max_in_flight: 2,
            max_in_flight_bytes: usize::MAX,
            body_limit: 65_536,
            upload_body_limit: 65_536,
        });
        let small = req(None, false);
        let _a = layer.budget.admit(&small).unwrap();
        let _b = layer.budget.admit(&small).unwrap();
        assert!(layer.budget.admit(&small).is_err());
    }
}
