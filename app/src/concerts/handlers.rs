//! HTTP handlers for concerts, schedules and seats.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{
    cache::{self, Family},
    store,
    types::{
        ConcertDetail, ConcertId, ConcertView, Items, NewConcert, NewSchedule, NewSeats,
        ScheduleId, ScheduleView, SeatStatus, SeatView, parse_seats,
    },
};
use crate::{
    auth::{CurrentUser, Role},
    error::{ApiError, ApiResult},
    pagination::{PageQuery, Paged},
    queue::QueueId,
    state::AppState,
};

#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
pub struct ConcertFilter {
    /// Only concerts behind this waiting room.
    #[param(value_type = Option<QueueId>)]
    pub queue_id: Option<String>,
    /// Page size (default 20).
    #[param(value_type = Option<crate::pagination::PageLimit>)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<crate::pagination::Cursor>)]
    pub cursor: Option<String>,
}

#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
pub struct AvailableFilter {
    /// Only what can still be bought (no sold seat, no live hold).
    #[serde(default)]
    pub available: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SeatsCreated {
    pub created: u64,
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn to_bytes<T: Serialize>(v: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(ApiError::internal)
}

/// Create a concert, optionally with its schedules and their seats (admin).
#[utoipa::path(post, path = "/concerts", tag = "concerts", security(("bearer" = ["admin"])), request_body = NewConcert,
    responses(
        (status = 201, body = ConcertDetail),
        (status = 403, content_type = "application/problem+json"),
        (status = 409, description = "Duplicate schedule time or seat", content_type = "application/problem+json"),
        (status = 422, content_type = "application/problem+json"),
    ))]
pub async fn create_concert(
    State(state): State<AppState>,
    user: CurrentUser,
    Json(req): Json<NewConcert>,
) -> ApiResult<(StatusCode, Json<ConcertDetail>)> {
    user.require(Role::Admin)?;
    let input = req.parse()?;
    let (concert, schedules) = state
        .db
        .tx(async |tx| {
            let concert = store::insert_concert(&mut *tx, &input).await?;
            for s in &req.schedules {
                let id = store::insert_schedule(&mut *tx, concert.id, s.starts_at).await?;
                store::insert_seats(&mut *tx, id, &parse_seats(&s.seats)?).await?;
            }
            let (schedules, _) = store::schedules(tx, concert.id).await?;
            Ok::<_, ApiError>((concert, schedules))
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ConcertDetail { concert, schedules }),
    ))
}

/// Concerts, newest first; `queue_id` filters to one waiting room.
#[utoipa::path(get, path = "/concerts", tag = "concerts", params(ConcertFilter),
    responses((status = 200, body = Paged<ConcertView>), (status = 422, content_type = "application/problem+json")))]
pub async fn list_concerts(
    State(state): State<AppState>,
    Query(f): Query<ConcertFilter>,
) -> ApiResult<Json<Paged<ConcertView>>> {
    let page = PageQuery {
        limit: f.limit,
        cursor: f.cursor,
    }
    .parse(20)?;
    let queue = f.queue_id.as_deref().map(QueueId::parse).transpose()?;
    let rows = state
        .db
        .run(async |c| store::concerts(c, queue.as_ref().map(QueueId::as_str), page).await)
        .await?;
    Ok(Json(Paged::from_rows(rows, page, |c| c.id.0)))
}

/// Add a schedule (date and time), optionally with seats (admin).
#[utoipa::path(post, path = "/concerts/{id}/schedules", tag = "concerts", security(("bearer" = ["admin"])), request_body = NewSchedule,
    params(("id" = i64, Path, description = "Concert id")),
    responses(
        (status = 201, body = ScheduleView),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, content_type = "application/problem+json"),
        (status = 422, content_type = "application/problem+json"),
    ))]
pub async fn create_schedule(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(req): Json<NewSchedule>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    user.require(Role::Admin)?;
    let concert = ConcertId(id);
    let seats = parse_seats(&req.seats)?;
    let (schedule, n) = state
        .db
        .tx(async |tx| {
            let schedule = store::insert_schedule(&mut *tx, concert, req.starts_at).await?;
            let n = store::insert_seats(tx, schedule, &seats).await?;
            Ok::<_, ApiError>((schedule, n))
        })
        .await?;
    cache::invalidate(&state, schedule, concert).await;
    let view = ScheduleView {
        id: schedule,
        concert_id: concert,
        starts_at: req.starts_at,
        available_seats: i64::try_from(n).unwrap_or(0),
    };
    Ok((StatusCode::CREATED, Json(view)))
}

/// A concert's schedules (dates); `available=true` keeps those with a seat still free.
/// Served from the cache, which every hold, release and sale invalidates.
#[utoipa::path(get, path = "/concerts/{id}/schedules", tag = "concerts",
    params(("id" = i64, Path, description = "Concert id"), AvailableFilter),
    responses((status = 200, body = Items<ScheduleView>), (status = 404, content_type = "application/problem+json")))]
pub async fn list_schedules(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(f): Query<AvailableFilter>,
) -> ApiResult<Response> {
    let concert = ConcertId(id);
    let variant = if f.available { "avail" } else { "all" };
    let bytes = cache::get_or_load(
        &state,
        "schedules",
        &Family::schedules(concert),
        variant,
        || async {
            let (mut items, next) = state
                .db
                .run(async |c| {
                    let found = store::schedules(&mut *c, concert).await?;
                    if found.0.is_empty() && store::concert(c, concert).await?.is_none() {
                        return Err(ApiError::not_found("concert"));
                    }
                    Ok(found)
                })
                .await?;
            if f.available {
                items.retain(|s| s.available_seats > 0);
            }
            Ok((to_bytes(&Items { items })?, next))
        },
    )
    .await?;
    Ok(json_bytes(bytes))
}

/// Add seats in bulk to a schedule (admin).
#[utoipa::path(post, path = "/schedules/{id}/seats", tag = "concerts", security(("bearer" = ["admin"])), request_body = NewSeats,
    params(("id" = i64, Path, description = "Schedule id")),
    responses(
        (status = 201, body = SeatsCreated),
        (status = 404, content_type = "application/problem+json"),
        (status = 409, content_type = "application/problem+json"),
        (status = 422, content_type = "application/problem+json"),
    ))]
pub async fn create_seats(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
    Json(req): Json<NewSeats>,
) -> ApiResult<(StatusCode, Json<SeatsCreated>)> {
    user.require(Role::Admin)?;
    let schedule = ScheduleId(id);
    let seats = parse_seats(&req.seats)?;
    let (concert, created) = state
        .db
        .tx(async |tx| {
            let (concert, _, _) = store::schedule_concert(&mut *tx, schedule)
                .await?
                .ok_or_else(|| ApiError::not_found("schedule"))?;
            let created = store::insert_seats(tx, schedule, &seats).await?;
            Ok::<_, ApiError>((concert, created))
        })
        .await?;
    cache::invalidate(&state, schedule, concert).await;
    Ok((StatusCode::CREATED, Json(SeatsCreated { created })))
}

/// A schedule's seats with their status; `available=true` keeps the free ones. A seat under
/// a live hold is never offered; an expired hold is free even before the sweeper runs.
#[utoipa::path(get, path = "/schedules/{id}/seats", tag = "concerts",
    params(("id" = i64, Path, description = "Schedule id"), AvailableFilter),
    responses((status = 200, body = Items<SeatView>), (status = 404, content_type = "application/problem+json")))]
pub async fn list_seats(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(f): Query<AvailableFilter>,
) -> ApiResult<Response> {
    let schedule = ScheduleId(id);
    let variant = if f.available { "avail" } else { "all" };
    let bytes = cache::get_or_load(
        &state,
        "seats",
        &Family::seats(schedule),
        variant,
        || async {
            let (mut items, next) = state
                .db
                .run(async |c| {
                    let found = store::seats(&mut *c, schedule).await?;
                    if found.0.is_empty() && !store::schedule_exists(c, schedule).await? {
                        return Err(ApiError::not_found("schedule"));
                    }
                    Ok(found)
                })
                .await?;
            if f.available {
                items.retain(|s| s.status == SeatStatus::Free);
            }
            Ok((to_bytes(&Items { items })?, next))
        },
    )
    .await?;
    Ok(json_bytes(bytes))
}
