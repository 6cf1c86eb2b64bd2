//! Middleware: per-request span and metrics, and the guarantee that every error response is
//! problem+json — including axum's own rejections, timeouts, load shedding and panics.
//!
//! The per-request layers are hand-written tower services rather than `from_fn` closures:
//! those box the inner service and the future on every request, and on the hot read paths
//! that bookkeeping cost as much as the work.

use std::{
    any::Any,
    borrow::Cow,
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::{
    BoxError,
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::{
    error::{ApiError, PROBLEM_JSON, problem_response},
    platform::metrics::{HttpLabels, Metrics},
    state::AppState,
};

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

/// Non-GET routes that need only Redis: they keep working while PostgreSQL's breaker is open.
const REDIS_ONLY_WRITES: [&str; 3] = [
    "/api/v1/coupon-campaigns/{id}/issue",
    "/api/v1/queues/{queue_id}/tokens",
    "/api/v1/queues/{queue_id}/tokens/me",
];

/// The innermost per-route layer: copies the matched route template into the response so
/// the outer [`Observe`] layer can label by route (`/api/v1/goods/{id}`) instead of by raw
/// path; on API routes it also refuses, while PostgreSQL's breaker is open, the writes that
/// need it: 503 `circuit-open` with the remaining open time as `Retry-After`, before any
/// extractor or handler runs. Reads go on: cached ones are served (stale if need be) and the
/// others fail fast at their own guard.
#[derive(Clone)]
pub struct RouteGuardLayer {
    postgres_circuit: Option<AppState>,
}

impl RouteGuardLayer {
    /// API routes: route label and the PostgreSQL fast-fail.
    pub fn api(state: AppState) -> Self {
        Self {
            postgres_circuit: Some(state),
        }
    }

    /// Operations routes: the route label only.
    pub fn label_only() -> Self {
        Self {
            postgres_circuit: None,
        }
    }
}

impl<S> Layer<S> for RouteGuardLayer {
    type Service = RouteGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteGuard {
            inner,
            postgres_circuit: self.postgres_circuit.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RouteGuard<S> {
    inner: S,
    postgres_circuit: Option<AppState>,
}

fn refused_by_postgres_circuit(
    state: &AppState,
    method: &Method,
    matched: Option<&MatchedPath>,
) -> Option<Response> {
    let needs_postgres =
        !method.is_safe() && !matched.is_some_and(|m| REDIS_ONLY_WRITES.contains(&m.as_str()));
    if !needs_postgres {
        return None;
    }
    let wait = state.breakers.postgres.refusing_for()?;
    Some(crate::platform::resilience::circuit_open("postgres", wait).into_response())
}

impl<S> Service<Request> for RouteGuard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteGuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let matched = req.extensions().get::<MatchedPath>().cloned();
        if let Some(state) = &self.postgres_circuit
            && let Some(refused) =
                refused_by_postgres_circuit(state, req.method(), matched.as_ref())
        {
            return RouteGuardFuture::Refused {
                res: Some(with_route(refused, matched)),
            };
        }
        RouteGuardFuture::Running {
            fut: self.inner.call(req),
            matched,
        }
    }
}

fn with_route(mut res: Response, matched: Option<MatchedPath>) -> Response {
    if let Some(m) = matched {
        res.extensions_mut().insert(m);
    }
    res
}

pin_project! {
    #[project = RouteGuardProj]
    pub enum RouteGuardFuture<F> {
        Running { #[pin] fut: F, matched: Option<MatchedPath> },
        Refused { res: Option<Response> },
    }
}

impl<F> Future for RouteGuardFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RouteGuardProj::Running { fut, matched } => {
                let Ok(res) = ready!(fut.poll(cx));
                Poll::Ready(Ok(with_route(res, matched.take())))
            }
            RouteGuardProj::Refused { res } => Poll::Ready(Ok(res
                .take()
                .expect("RouteGuardFuture polled after completion"))),
        }
    }
}

pub async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no route matches this path",
    )
}

/// Errors from the tower layers around the API: a timeout or a full server.
pub async fn tower_error(err: BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was abandoned",
        )
        .retry_after(1)
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is at capacity; retry shortly",
        )
        .retry_after(1)
    } else {
        ApiError::internal(err)
    }
}

pub fn panic_problem(panic: Box<dyn Any + Send + 'static>) -> Response {
    let msg = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = msg, "handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error",
        None,
    )
}

fn kind_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad-request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not-found",
        405 => "method-not-allowed",
        408 => "timeout",
        409 => "conflict",
        413 => "payload-too-large",
        415 => "unsupported-media-type",
        422 => "validation-failed",
        429 => "rate-limited",
        503 => "service-unavailable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

fn default_detail(status: StatusCode) -> &'static str {
    match status.as_u16() {
        405 => "this method is not allowed on this path",
        413 => "the request body is larger than the server accepts",
        415 => "expected a JSON body with Content-Type: application/json",
        _ => status.canonical_reason().unwrap_or("error"),
    }
}

/// Is this an error response that is not problem+json yet?
fn needs_problem(res: &Response) -> bool {
    let status = res.status();
    (status.is_client_error() || status.is_server_error())
        && !res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// Rewrites any error response that is not problem+json yet (axum's plain-text rejections,
/// 405s, body-limit errors) into one, keeping its status, its message as `detail` for client
/// errors, and headers such as `Allow`.
pub async fn ensure_problem(res: Response) -> Response {
    if !needs_problem(&res) {
        return res;
    }
    let status = res.status();
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    // 5xx bodies never carry internal detail
    let detail = if status.is_server_error() || text.is_empty() {
        default_detail(status)
    } else {
        text
    };
    let mut out = problem_response(status, kind_for(status), detail, None);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE && !out.headers().contains_key(header::RETRY_AFTER)
    {
        out.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    out.into_response()
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
