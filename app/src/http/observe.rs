//! The outermost application layer: the per-request span and id, the request metrics
//! (`floodgate_http_request_duration_seconds`, the in-flight gauge) and the guarantee that
//! every error response leaves as problem+json ([`super::problem::ensure_problem`]).
//!
//! The per-request layers are hand-written tower services rather than `from_fn` closures:
//! those box the inner service and the future on every request, and on the hot read paths
//! that bookkeeping cost as much as the work.

use std::{
    borrow::Cow,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method},
    response::Response,
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use super::problem::{ensure_problem, needs_problem};
use crate::platform::metrics::{HttpLabels, Metrics};

pub fn request_span(req: &Request<Body>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
}

/// Request ids are random UUIDs, as with tower-http's `MakeRequestUuid`, but drawn from the
/// thread-local CSPRNG instead of a `getrandom` system call per request.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeRequestUuid;

impl MakeRequestId for MakeRequestUuid {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// The `method` label: the standard methods by name, any other (a client may send any
/// token as a method) as `other`, so clients cannot mint new metric series.
fn method_label(method: &Method) -> Cow<'static, str> {
    Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    })
}

/// The outermost application layer: records `floodgate_http_request_duration_seconds` and
/// the in-flight gauge, then rewrites any error response that is not problem+json yet (see
/// [`ensure_problem`]).
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = method_label(req.method());
        let in_flight = InFlight::start(&self.metrics);
        ObserveFuture {
            state: ObserveState::Running {
                fut: self.inner.call(req),
            },
            method,
            start: Instant::now(),
            in_flight: Some(in_flight),
        }
    }
}

/// Counts a request in flight until it answers or is dropped (a client that goes away
/// must not leave the gauge raised).
struct InFlight(Arc<Metrics>);

impl InFlight {
    fn start(metrics: &Arc<Metrics>) -> Self {
        metrics.http_in_flight.inc();
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.http_in_flight.dec();
    }
}

pin_project! {
    #[project = ObserveStateProj]
    enum ObserveState<F> {
        Running { #[pin] fut: F },
        Rewriting { fut: Pin<Box<dyn Future<Output = Response> + Send>> },
    }
}

pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        state: ObserveState<F>,
        method: Cow<'static, str>,
        start: Instant,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                ObserveStateProj::Running { fut } => {
                    let Ok(res) = ready!(fut.poll(cx));
                    if let Some(in_flight) = this.in_flight.take() {
                        observe(&in_flight.0, &res, this.method, *this.start);
                    }
                    if !needs_problem(&res) {
                        return Poll::Ready(Ok(res));
                    }
                    this.state.set(ObserveState::Rewriting {
                        fut: Box::pin(ensure_problem(res)),
                    });
                }
                ObserveStateProj::Rewriting { fut } => return fut.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

fn observe(metrics: &Metrics, res: &Response, method: &mut Cow<'static, str>, start: Instant) {
    let route = res
        .extensions()
        .get::<MatchedPath>()
        .map_or(Cow::Borrowed("unmatched"), |m| {
            Cow::Owned(m.as_str().to_owned())
        });
    metrics
        .http_duration
        .get_or_create(&HttpLabels {
            route,
            method: std::mem::take(method),
            status: res.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_standard_methods_share_the_other_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::TRACE), "TRACE");
        for m in ["FOO", "get", "PROPFIND", "X-1234567890"] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{m}");
        }
    }
}
