//! `GET /waiting-room/{queue_id}`: the waiting-room page. One self-contained HTML document
//! (inline CSS and script, no external assets) that logs in or signs up, joins, shows
//! position, people ahead and ETA, polls at the server's hint and, once admitted, moves the
//! user on to choosing a seat, holding it and paying.

use axum::{
    extract::Path,
    http::header,
    response::{IntoResponse, Response},
};

use super::types::QueueId;
use crate::error::ApiError;

const PAGE: &str = include_str!("waiting_room.html");

pub async fn waiting_room(Path(queue_id): Path<String>) -> Result<Response, ApiError> {
    // A valid queue id is [a-z0-9-] only, so it is safe to place in HTML and script.
    let queue = QueueId::parse(&queue_id)?;
    let html = PAGE.replace("__QUEUE_ID__", queue.as_str());
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'self'",
            ),
        ],
        html,
    )
        .into_response())
}
