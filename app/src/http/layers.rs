//! Middleware: per-request span and metrics, and the guarantee that every error response is
//! problem+json — including axum's own rejections, timeouts, load shedding and panics.

use std::{any::Any, time::Instant};

use axum::{
    BoxError,
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    error::{ApiError, PROBLEM_JSON, problem_response},
    platform::metrics::HttpLabels,
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

/// Copies the matched route template into the response so the outer metrics layer can label
/// by route (`/api/v1/goods/{id}`) instead of by raw path.
pub async fn remember_route(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    if let Some(m) = matched {
        res.extensions_mut().insert(m);
    }
    res
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let start = Instant::now();
    state.metrics.http_in_flight.inc();
    let res = next.run(req).await;
    state.metrics.http_in_flight.dec();
    let route = res
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    state
        .metrics
        .http_duration
        .get_or_create(&HttpLabels {
            route,
            method,
            status: res.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    res
}

/// Non-GET routes that need only Redis: they keep working while PostgreSQL's breaker is open.
const REDIS_ONLY_WRITES: [&str; 3] = [
    "/api/v1/coupon-campaigns/{id}/issue",
    "/api/v1/queues/{queue_id}/tokens",
    "/api/v1/queues/{queue_id}/tokens/me",
];

/// While PostgreSQL's breaker is open, writes that need it answer 503 `circuit-open` with the
/// remaining open time as `Retry-After`, before any extractor or handler runs. Reads go on:
/// cached ones are served (stale if need be) and the others fail fast at their own guard.
pub async fn postgres_circuit(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let needs_postgres = !req.method().is_safe()
        && !matched
            .as_ref()
            .is_some_and(|m| REDIS_ONLY_WRITES.contains(&m.as_str()));
    if needs_postgres && let Some(wait) = state.breakers.postgres.refusing_for() {
        return crate::platform::resilience::circuit_open("postgres", wait).into_response();
    }
    next.run(req).await
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

/// Rewrites any error response that is not problem+json yet (axum's plain-text rejections,
/// 405s, body-limit errors) into one, keeping its status, its message as `detail` for client
/// errors, and headers such as `Allow`.
pub async fn ensure_problem(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return res;
    }
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
