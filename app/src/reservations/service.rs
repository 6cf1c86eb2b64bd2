//! Holds and payments.
//!
//! A hold is one conditional write on the seat (free, or held with a lapsed hold), so
//! hundreds of racers for one seat produce exactly one hold. Payment runs in one transaction
//! under the Idempotency-Key mechanism: the hold must still be the caller's and live, the
//! wallet is debited (with its ledger row), the seat sold, the payment row written and the
//! reservation confirmed. The waiting-room session ends after the commit.
//!
//! **Lock order.** Every transaction that touches both takes a seat's reservation row before
//! the seat row: a hold ([`hold_in`]: the user's advisory lock, the seat's held reservation,
//! then the seat), a payment ([`pay`]: the reservation, the seat, then the wallet) and the
//! sweeper (`concerts/sweeper.rs`: the lapsed reservations, then their seats). Two of them can
//! wait for each other's rows but never in a cycle, so a hold racing the sweep or a payment
//! at expiry waits a moment instead of dying of a deadlock (`docs/ticketing.md`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;

use super::rules::{self, Found};
use crate::{
    auth::UserId,
    concerts::{
        cache, store as concerts,
        types::{ConcertId, ReservationId, ScheduleId, SeatId},
    },
    error::{ApiError, OnConstraint},
    platform::money::Money,
    state::AppState,
    wallet::{LedgerKind, store as wallet},
};

#[derive(Serialize, Deserialize, ToSchema, Debug, Clone, sqlx::FromRow)]
pub struct ReservationView {
    #[sqlx(rename = "reservation_id")]
    pub id: ReservationId,
    pub user_id: UserId,
    pub schedule_id: ScheduleId,
    pub seat_id: SeatId,
    /// `held`, `confirmed` or `expired` (a lapsed hold reads as expired before the sweep).
    pub status: String,
    #[schema(value_type = i64)]
    pub amount: Money,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct PaymentView {
    pub payment_id: i64,
    pub reservation: ReservationView,
    #[schema(value_type = i64)]
    pub balance: Money,
}

/// The concert behind a schedule: id, waiting room, per-user hold limit.
pub struct Gate {
    pub concert: ConcertId,
    pub queue_id: Option<String>,
    pub max_holds: i32,
}

pub async fn gate(state: &AppState, schedule: ScheduleId) -> Result<Gate, ApiError> {
    let (concert, queue_id, max_holds) = state
        .db
        .run(async |c| concerts::schedule_concert(c, schedule).await)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(Gate {
        concert,
        queue_id,
        max_holds,
    })
}

const VIEW: &str = "select reservation_id, user_id, schedule_id, seat_id,
        case when status = 'held' and expires_at <= now() then 'expired' else status end as status,
        amount, expires_at, created_at, confirmed_at
   from reservations where reservation_id = $1";

pub async fn get(state: &AppState, id: ReservationId) -> Result<Option<ReservationView>, ApiError> {
    state
        .db
        .run(async |c| sqlx::query_as(VIEW).bind(id).fetch_optional(c).await)
        .await
}

/// A hold to place: who, which seat of which schedule, under which gate, for how long.
pub struct NewHold<'a> {
    pub user: UserId,
    pub schedule: ScheduleId,
    pub seat: SeatId,
    pub gate: &'a Gate,
    pub ttl_secs: f64,
}

/// Places a hold for `ttl_secs`. 409 `seat-taken` when sold or under a live hold.
pub async fn hold(state: &AppState, hold: &NewHold<'_>) -> Result<ReservationView, ApiError> {
    let view = state.db.tx(async |tx| hold_in(tx, hold).await).await?;
    cache::invalidate(state, hold.schedule, hold.gate.concert).await;
    Ok(view)
}

async fn hold_in(tx: &mut PgConnection, hold: &NewHold<'_>) -> Result<ReservationView, ApiError> {
    let NewHold {
        user,
        schedule,
        seat,
        gate,
        ttl_secs,
    } = *hold;
    // Serializes one user's holds so the per-user limit cannot be raced (other users are
    // not blocked: the lock is per user).
    sqlx::query("select pg_advisory_xact_lock(4242, $1::int4)")
        .bind(i32::try_from(user.0 % i64::from(i32::MAX)).unwrap_or(0))
        .execute(&mut *tx)
        .await?;
    let active: i64 = sqlx::query_scalar(
        "select count(*) from reservations
          where user_id = $1 and schedule_id = $2 and status = 'held' and expires_at > now()",
    )
    .bind(user)
    .bind(schedule)
    .fetch_one(&mut *tx)
    .await?;
    rules::may_hold(active, gate.max_holds)?;

    // Lock order: the lapsed hold on the seat (if any), then the seat. Once it is ours the
    // seat cannot change hands but through us; if the sweeper or a payment has it, we wait
    // here, holding nothing they need, and read what they left (expired, confirmed: no row).
    // A live hold is not locked: the seat write below misses it, so racers for a held seat
    // answer 409 at once instead of queueing on its reservation.
    let previous: Option<ReservationId> = sqlx::query_scalar(
        "select reservation_id from reservations
          where seat_id = $1 and status = 'held' and expires_at <= now() for update",
    )
    .bind(seat)
    .fetch_optional(&mut *tx)
    .await?;
    // The one conditional write: free, or held with a lapsed hold — the hold we locked, so a
    // hold placed since that read (which we would have to lock after the seat) makes it miss.
    let taken: Option<(ReservationId, Money, DateTime<Utc>)> = sqlx::query_as(
        "update seats
            set held_by = $1, hold_expires_at = now() + make_interval(secs => $4),
                hold_reservation_id = nextval(pg_get_serial_sequence('reservations', 'reservation_id'))
          where seat_id = $2 and schedule_id = $3 and sold_to is null
            and (held_by is null or hold_expires_at <= now())
            and hold_reservation_id is not distinct from $5
        returning hold_reservation_id, price, hold_expires_at",
    )
    .bind(user)
    .bind(seat)
    .bind(schedule)
    .bind(ttl_secs)
    .bind(previous)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, price, expires_at)) = taken else {
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from seats where seat_id = $1 and schedule_id = $2)",
        )
        .bind(seat)
        .bind(schedule)
        .fetch_one(&mut *tx)
        .await?;
        return Err(if exists {
            ApiError::conflict("seat-taken", "this seat is sold or held by someone else")
        } else {
            ApiError::not_found("seat in this schedule")
        });
    };
    // The lapsed hold this write replaced (if any) is over; its row is already locked.
    if let Some(previous) = previous {
        sqlx::query("update reservations set status = 'expired' where reservation_id = $1")
            .bind(previous)
            .execute(&mut *tx)
            .await?;
    }
    let view: ReservationView = sqlx::query_as(
        "insert into reservations (reservation_id, user_id, schedule_id, seat_id, amount, expires_at)
         values ($1, $2, $3, $4, $5, $6)
         returning reservation_id, user_id, schedule_id, seat_id, status, amount, expires_at, created_at, confirmed_at",
    )
    .bind(id)
    .bind(user)
    .bind(schedule)
    .bind(seat)
    .bind(price)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await
    .on_constraint("reservations_seat_held_key", || {
        ApiError::conflict("seat-taken", "this seat is held by someone else")
    })?;
    Ok(view)
}

/// The payment transaction body (run inside the Idempotency-Key transaction).
pub async fn pay(
    conn: &mut PgConnection,
    user: UserId,
    id: ReservationId,
) -> Result<PaymentView, ApiError> {
    let row: Option<(UserId, String, bool, Money, SeatId)> = sqlx::query_as(
        "select user_id, status, expires_at > now(), amount, seat_id from reservations where reservation_id = $1 for update",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let (owner, status, live, amount, seat) =
        row.ok_or_else(|| ApiError::not_found("reservation"))?;
    if owner != user {
        // not revealing other users' reservations
        return Err(ApiError::not_found("reservation"));
    }
    let found = Found::parse(&status, live)
        .ok_or_else(|| ApiError::internal(format!("unknown reservation status {status}")))?;
    rules::payable(found)?;
    let sold = sqlx::query(
        "update seats set sold_to = $1, sold_reservation_id = $2,
                          held_by = null, hold_expires_at = null, hold_reservation_id = null
          where seat_id = $3 and hold_reservation_id = $2 and held_by = $1 and hold_expires_at > now()",
    )
    .bind(user)
    .bind(id)
    .bind(seat)
    .execute(&mut *conn)
    .await?;
    if sold.rows_affected() != 1 {
        return Err(rules::lapsed());
    }
    let balance = wallet::debit(conn, user, amount, LedgerKind::SeatPayment, Some(id.0)).await?;
    let payment_id: i64 = sqlx::query_scalar(
        "insert into seat_payments (reservation_id, user_id, amount) values ($1, $2, $3) returning payment_id",
    )
    .bind(id)
    .bind(user)
    .bind(amount)
    .fetch_one(&mut *conn)
    .await?;
    let reservation: ReservationView = sqlx::query_as(
        "update reservations set status = 'confirmed', confirmed_at = now() where reservation_id = $1
         returning reservation_id, user_id, schedule_id, seat_id, status, amount, expires_at, created_at, confirmed_at",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(PaymentView {
        payment_id,
        reservation,
        balance,
    })
}

/// The schedule and concert of a reservation, for the queue check and cache invalidation.
pub async fn reservation_gate(
    state: &AppState,
    id: ReservationId,
) -> Result<Option<(UserId, ScheduleId, Gate)>, ApiError> {
    let row: Option<(UserId, ScheduleId, ConcertId, Option<String>, i32)> = state
        .db
        .run(async |c| {
            sqlx::query_as(
                "select r.user_id, r.schedule_id, c.concert_id, c.queue_id, c.max_holds_per_user
                   from reservations r join schedules s using (schedule_id) join concerts c using (concert_id)
                  where r.reservation_id = $1",
            )
            .bind(id)
            .fetch_optional(c)
            .await
        })
        .await?;
    Ok(row.map(|(u, s, concert, queue_id, max_holds)| {
        (
            u,
            s,
            Gate {
                concert,
                queue_id,
                max_holds,
            },
        )
    }))
}
