//! HTTP handlers of the waiting room: parse, authorize, call the service.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
};
use chrono::Utc;

use super::{
    pass::{PassError, QueueToken},
    service,
    types::{JoinResponse, PlaceView, QueueId, QueueView},
};
use crate::{auth::CurrentUser, error::ApiResult, state::AppState};

/// Join a waiting room; the same user joining again gets the same place back.
#[utoipa::path(post, path = "/queues/{queue_id}/tokens", tag = "queue", security(("bearer" = [])),
    params(("queue_id" = QueueId, Path, description = "Queue id")),
    responses(
        (status = 201, body = JoinResponse),
        (status = 401, content_type = "application/problem+json"),
        (status = 404, description = "No such waiting room: the runtime config does not publish it and no goods or concert references it", content_type = "application/problem+json"),
        (status = 409, description = "The queue is closed (after closesAt)", content_type = "application/problem+json"),
        (status = 422, description = "Invalid queue id", content_type = "application/problem+json"),
    ))]
pub async fn join(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(queue_id): Path<String>,
) -> ApiResult<(StatusCode, Json<JoinResponse>)> {
    let queue = QueueId::parse(&queue_id)?;
    let joined = service::join(&state, &queue, user.id, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(joined)))
}

/// The caller's place: status, position, people ahead, ETA and when to poll next. Polling
/// is what keeps a waiting place (see `abandonAfter`).
#[utoipa::path(get, path = "/queues/{queue_id}/tokens/me", tag = "queue",
    params(("queue_id" = QueueId, Path, description = "Queue id"), ("X-Queue-Token" = String, Header, description = "Token from the join")),
    responses(
        (status = 200, body = PlaceView),
        (status = 403, description = "Token missing, forged or for another queue", content_type = "application/problem+json"),
    ))]
pub async fn me(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    token: Option<QueueToken>,
) -> ApiResult<Json<PlaceView>> {
    let queue = QueueId::parse(&queue_id)?;
    let token = token.ok_or_else(|| PassError::Missing.into_api())?;
    Ok(Json(
        service::me(&state, &queue, token.as_str(), Utc::now()).await?,
    ))
}

/// Leave the line, or end an admitted session early (frees the slot at once).
#[utoipa::path(delete, path = "/queues/{queue_id}/tokens/me", tag = "queue",
    params(("queue_id" = QueueId, Path, description = "Queue id"), ("X-Queue-Token" = String, Header, description = "Token from the join")),
    responses(
        (status = 204, description = "Left"),
        (status = 403, description = "Token missing, forged, expired or for another queue", content_type = "application/problem+json"),
    ))]
pub async fn leave(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    token: Option<QueueToken>,
) -> ApiResult<StatusCode> {
    let queue = QueueId::parse(&queue_id)?;
    let token = token.ok_or_else(|| PassError::Missing.into_api())?;
    service::leave_with_token(&state, &queue, token.as_str()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A queue's state: waiting, active sessions, measured admission rate, cap and status.
#[utoipa::path(get, path = "/queues/{queue_id}", tag = "queue",
    params(("queue_id" = QueueId, Path, description = "Queue id")),
    responses((status = 200, body = QueueView), (status = 422, content_type = "application/problem+json")))]
pub async fn show(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
) -> ApiResult<Json<QueueView>> {
    let queue = QueueId::parse(&queue_id)?;
    Ok(Json(service::view(&state, &queue, Utc::now()).await?))
}
