//! Every error response is problem+json: axum's own rejections, 404s of no route, timeouts,
//! load shedding and panics included.

use std::any::Any;

use axum::{
    BoxError,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::error::{ApiError, PROBLEM_JSON, problem_response};

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
pub(super) fn needs_problem(res: &Response) -> bool {
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
