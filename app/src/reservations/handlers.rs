//! HTTP handlers for holds and payments: parse, authorize (owner, admitted pass when the
//! concert has a waiting room), call the service.

use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::service::{self, PaymentView, ReservationView};
use crate::{
    auth::CurrentUser,
    concerts::{
        cache,
        types::{ReservationId, ScheduleId, SeatId},
    },
    error::{ApiError, ApiResult},
    idempotency::{self, IdempotencyKey},
    queue::{self, QueueToken},
    state::AppState,
};

#[derive(Deserialize, Serialize, ToSchema, Debug)]
#[schema(example = json!({"schedule_id": 1, "seat_id": 1}))]
pub struct HoldRequest {
    pub schedule_id: ScheduleId,
    pub seat_id: SeatId,
}

/// Hold a seat for the configured time (`ttls.seatHold`, 5 min by default).
#[utoipa::path(post, path = "/reservations", tag = "reservations", security(("bearer" = [])), request_body = HoldRequest,
    params(("X-Queue-Token" = Option<String>, Header, nullable = false, description = "Admitted pass, when the concert has a waiting room")),
    responses(
        (status = 201, body = ReservationView),
        (status = 403, description = "Queue pass missing, forged, expired, for another queue, or not admitted", content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Seat taken, or the per-user hold limit reached", content_type = "application/problem+json"),
    ))]
pub async fn hold(
    State(state): State<AppState>,
    user: CurrentUser,
    pass: Option<QueueToken>,
    Json(req): Json<HoldRequest>,
) -> ApiResult<(StatusCode, Json<ReservationView>)> {
    let gate = service::gate(&state, req.schedule_id).await?;
    if let Some(q) = &gate.queue_id {
        queue::require_pass(&state, pass.as_ref(), q, user.id).await?;
    }
    let ttl = state
        .runtime
        .get()
        .ttls
        .seat_hold
        .as_duration()
        .as_secs_f64();
    let hold = service::NewHold {
        user: user.id,
        schedule: req.schedule_id,
        seat: req.seat_id,
        gate: &gate,
        ttl_secs: ttl,
    };
    let view = service::hold(&state, &hold).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One of the caller's reservations.
#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Reservation id")),
    responses((status = 200, body = ReservationView), (status = 404, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> ApiResult<Json<ReservationView>> {
    match service::get(&state, ReservationId(id)).await? {
        Some(r) if r.user_id == user.id => Ok(Json(r)),
        _ => Err(ApiError::not_found("reservation")),
    }
}

/// Pay for a held seat from the wallet (requires `Idempotency-Key`): the seat becomes sold
/// and the waiting-room session ends. Lapsed hold 410; already paid (new key) 409.
#[utoipa::path(post, path = "/reservations/{id}/payment", tag = "reservations", security(("bearer" = [])),
    params(
        ("id" = i64, Path, description = "Reservation id"),
        ("Idempotency-Key" = crate::idempotency::IdempotencyKey, Header, description = "Same key replays the first answer"),
        ("X-Queue-Token" = Option<String>, Header, nullable = false, description = "Admitted pass, when the concert has a waiting room"),
    ),
    responses(
        (status = 201, body = PaymentView),
        (status = 400, description = "Missing Idempotency-Key", content_type = "application/problem+json"),
        (status = 403, content_type = "application/problem+json"),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, description = "Already paid, key in flight, or insufficient balance", content_type = "application/problem+json"),
        (status = 410, description = "The hold expired", content_type = "application/problem+json"),
    ))]
pub async fn pay(
    State(state): State<AppState>,
    user: CurrentUser,
    pass: Option<QueueToken>,
    key: IdempotencyKey,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let id = ReservationId(id);
    let (owner, schedule, gate) = service::reservation_gate(&state, id)
        .await?
        .ok_or_else(|| ApiError::not_found("reservation"))?;
    if owner != user.id {
        return Err(ApiError::not_found("reservation"));
    }
    let fp = idempotency::fingerprint("POST /reservations/{id}/payment", &id.0);
    let queue_id = gate.queue_id.clone();
    let res = idempotency::run(&state, user.id, Some(key), &fp, async |conn| {
        // checked only for a first attempt: a replay after the session ended still replays
        if let Some(q) = &queue_id {
            queue::require_pass(&state, pass.as_ref(), q, user.id).await?;
        }
        let paid = service::pay(conn, user.id, id).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(paid).map_err(ApiError::internal)?,
        ))
    })
    .await?;
    if res.status().is_success() {
        cache::invalidate(&state, schedule, gate.concert).await;
        if let Some(q) = &gate.queue_id
            && let Err(e) = queue::end_session(&state, q, user.id).await
        {
            // The payment committed and must be reported as such; the session then simply
            // runs out at its TTL instead of freeing the slot at once.
            tracing::warn!(error = %e, queue = %q, "could not end the queue session after payment");
        }
    }
    Ok(res)
}
