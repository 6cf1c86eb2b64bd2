//! Concert, schedule and seat SQL (runtime queries, covered by the integration tests).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::types::{
    ConcertId, ConcertInput, ConcertView, ScheduleId, ScheduleView, SeatColumns, SeatId, SeatView,
    seat_status,
};
use crate::{
    error::{ApiError, OnConstraint},
    pagination::Page,
    platform::money::Money,
};

pub async fn insert_concert(
    conn: &mut PgConnection,
    c: &ConcertInput,
) -> Result<ConcertView, ApiError> {
    Ok(sqlx::query_as(
        "insert into concerts (title, venue, queue_id, max_holds_per_user) values ($1, $2, $3, $4)
         returning concert_id, title, venue, queue_id, max_holds_per_user, created_at",
    )
    .bind(&c.title)
    .bind(&c.venue)
    .bind(c.queue_id.as_ref().map(|q| q.as_str()))
    .bind(c.max_holds_per_user)
    .fetch_one(conn)
    .await?)
}

pub async fn insert_schedule(
    conn: &mut PgConnection,
    concert: ConcertId,
    starts_at: DateTime<Utc>,
) -> Result<ScheduleId, ApiError> {
    Ok(sqlx::query_scalar(
        "insert into schedules (concert_id, starts_at) values ($1, $2) returning schedule_id",
    )
    .bind(concert)
    .bind(starts_at)
    .fetch_one(conn)
    .await
    .on_constraint("schedules_concert_starts_key", || {
        ApiError::conflict(
            "schedule-exists",
            "this concert already has a schedule at that time",
        )
    })
    .on_constraint("schedules_concert_id_fkey", || {
        ApiError::not_found("concert")
    })?)
}

/// Inserts seats in one statement; a seat that already exists makes the whole request 409.
pub async fn insert_seats(
    conn: &mut PgConnection,
    schedule: ScheduleId,
    s: &SeatColumns,
) -> Result<u64, ApiError> {
    let done = sqlx::query(
        "insert into seats (schedule_id, section, row_label, number, price)
         select $1, * from unnest($2::text[], $3::text[], $4::int[], $5::bigint[])",
    )
    .bind(schedule)
    .bind(&s.section)
    .bind(&s.row)
    .bind(&s.number)
    .bind(&s.price)
    .execute(conn)
    .await
    .on_constraint("seats_place_key", || {
        ApiError::conflict(
            "seat-exists",
            "a seat with that section, row and number already exists",
        )
    })
    .on_constraint("seats_schedule_id_fkey", || ApiError::not_found("schedule"))?;
    Ok(done.rows_affected())
}

pub async fn concerts(
    db: &mut PgConnection,
    queue_id: Option<&str>,
    page: Page,
) -> Result<Vec<ConcertView>, ApiError> {
    Ok(sqlx::query_as(
        "select concert_id, title, venue, queue_id, max_holds_per_user, created_at from concerts
          where ($1::text is null or queue_id = $1) and ($2::bigint is null or concert_id < $2)
          order by concert_id desc limit $3",
    )
    .bind(queue_id)
    .bind(page.before)
    .bind(page.limit + 1)
    .fetch_all(db)
    .await?)
}

pub async fn concert(
    db: &mut PgConnection,
    id: ConcertId,
) -> Result<Option<ConcertView>, ApiError> {
    Ok(sqlx::query_as(
        "select concert_id, title, venue, queue_id, max_holds_per_user, created_at from concerts where concert_id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// The concert a schedule belongs to, for cache invalidation and queue checks.
pub async fn schedule_concert(
    db: &mut PgConnection,
    id: ScheduleId,
) -> Result<Option<(ConcertId, Option<String>, i32)>, ApiError> {
    Ok(sqlx::query_as(
        "select c.concert_id, c.queue_id, c.max_holds_per_user from schedules s join concerts c using (concert_id)
          where s.schedule_id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// Schedules with their available-seat counts, and the earliest live hold expiry among them
/// (a cached copy must not outlive it, or an expired hold would still look taken).
pub async fn schedules(
    db: &mut PgConnection,
    concert: ConcertId,
) -> Result<(Vec<ScheduleView>, Option<DateTime<Utc>>), ApiError> {
    let rows: Vec<ScheduleRow> = sqlx::query_as(
        "select s.schedule_id, s.concert_id, s.starts_at,
                count(st.seat_id) filter (where st.sold_to is null
                                            and (st.hold_expires_at is null or st.hold_expires_at <= now())),
                min(st.hold_expires_at) filter (where st.hold_expires_at > now())
           from schedules s left join seats st on st.schedule_id = s.schedule_id
          where s.concert_id = $1
          group by s.schedule_id
          order by s.starts_at, s.schedule_id",
    )
    .bind(concert)
    .fetch_all(db)
    .await?;
    let next = rows.iter().filter_map(|r| r.4).min();
    let views = rows
        .into_iter()
        .map(
            |(id, concert_id, starts_at, available_seats, _)| ScheduleView {
                id,
                concert_id,
                starts_at,
                available_seats,
            },
        )
        .collect();
    Ok((views, next))
}

type ScheduleRow = (
    ScheduleId,
    ConcertId,
    DateTime<Utc>,
    i64,
    Option<DateTime<Utc>>,
);
type SeatRow = (
    SeatId,
    ScheduleId,
    String,
    String,
    i32,
    Money,
    bool,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

/// All seats of a schedule with their status as of the database clock, and the earliest live
/// hold expiry.
pub async fn seats(
    db: &mut PgConnection,
    schedule: ScheduleId,
) -> Result<(Vec<SeatView>, Option<DateTime<Utc>>), ApiError> {
    let rows: Vec<SeatRow> = sqlx::query_as(
        "select seat_id, schedule_id, section, row_label, number, price, sold_to is not null, hold_expires_at, now()
           from seats where schedule_id = $1 order by section, row_label, number",
    )
    .bind(schedule)
    .fetch_all(db)
    .await?;
    let mut next: Option<DateTime<Utc>> = None;
    let views = rows
        .into_iter()
        .map(
            |(id, schedule_id, section, row, number, price, sold, hold, now)| {
                let status = seat_status(sold, hold, now);
                if status == super::types::SeatStatus::Held {
                    next = match (next, hold) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                SeatView {
                    id,
                    schedule_id,
                    section,
                    row,
                    number,
                    price,
                    status,
                }
            },
        )
        .collect();
    Ok((views, next))
}

pub async fn schedule_exists(db: &mut PgConnection, id: ScheduleId) -> Result<bool, ApiError> {
    Ok(sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from schedules where schedule_id = $1)",
    )
    .bind(id)
    .fetch_one(db)
    .await?)
}
