//! Typed ticketing values and the request/response shapes. Requests are parsed into
//! validated values before anything touches the database.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::ApiError,
    platform::{ids::id_type, money::Money},
    queue::QueueId,
};

id_type!(ConcertId);
id_type!(ScheduleId);
id_type!(SeatId);
id_type!(ReservationId);

pub const MAX_SEATS_PER_REQUEST: usize = 10_000;
pub const MAX_PRICE: Money = Money::new(1_000_000_000);

#[derive(Deserialize, Serialize, ToSchema, Debug, Clone)]
pub struct NewSeat {
    #[schema(example = "A")]
    pub section: String,
    #[schema(example = "3")]
    pub row: String,
    #[schema(example = 12)]
    pub number: i32,
    /// Minor units.
    #[schema(value_type = i64, example = 99000)]
    pub price: Money,
}

#[derive(Deserialize, ToSchema, Debug)]
pub struct NewSchedule {
    pub starts_at: DateTime<Utc>,
    #[serde(default)]
    pub seats: Vec<NewSeat>,
}

#[derive(Deserialize, ToSchema, Debug)]
pub struct NewConcert {
    #[schema(example = "Winter Gala")]
    pub title: String,
    #[serde(default)]
    pub venue: String,
    /// Waiting room gating holds and payments (`X-Queue-Token` required).
    pub queue_id: Option<String>,
    /// Active holds per user per schedule (1-10, default 1).
    pub max_holds_per_user: Option<i32>,
    #[serde(default)]
    pub schedules: Vec<NewSchedule>,
}

#[derive(Deserialize, ToSchema, Debug)]
pub struct NewSeats {
    pub seats: Vec<NewSeat>,
}

/// A validated concert.
pub struct ConcertInput {
    pub title: String,
    pub venue: String,
    pub queue_id: Option<QueueId>,
    pub max_holds_per_user: i32,
}

fn text(field: &str, raw: &str, max: usize, required: bool) -> Result<String, ApiError> {
    let t = raw.trim();
    if required && t.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if t.chars().count() > max || t.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most {max} printable characters"),
        ));
    }
    Ok(t.to_owned())
}

impl NewConcert {
    pub fn parse(&self) -> Result<ConcertInput, ApiError> {
        let max_holds = self.max_holds_per_user.unwrap_or(1);
        if !(1..=10).contains(&max_holds) {
            return Err(ApiError::invalid(
                "max_holds_per_user",
                "max_holds_per_user must be between 1 and 10",
            ));
        }
        let queue_id = self.queue_id.as_deref().map(QueueId::parse).transpose()?;
        let seats: usize = self.schedules.iter().map(|s| s.seats.len()).sum();
        if seats > MAX_SEATS_PER_REQUEST {
            return Err(ApiError::invalid(
                "schedules",
                format!("at most {MAX_SEATS_PER_REQUEST} seats per request"),
            ));
        }
        for s in &self.schedules {
            parse_seats(&s.seats)?;
        }
        Ok(ConcertInput {
            title: text("title", &self.title, 200, true)?,
            venue: text("venue", &self.venue, 200, false)?,
            queue_id,
            max_holds_per_user: max_holds,
        })
    }
}

/// Validated seats as column arrays, ready for one `unnest` insert.
#[derive(Default, Debug)]
pub struct SeatColumns {
    pub section: Vec<String>,
    pub row: Vec<String>,
    pub number: Vec<i32>,
    pub price: Vec<Money>,
}

pub fn parse_seats(seats: &[NewSeat]) -> Result<SeatColumns, ApiError> {
    if seats.len() > MAX_SEATS_PER_REQUEST {
        return Err(ApiError::invalid(
            "seats",
            format!("at most {MAX_SEATS_PER_REQUEST} seats per request"),
        ));
    }
    let mut cols = SeatColumns::default();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in seats.iter().enumerate() {
        let section = text(&format!("seats[{i}].section"), &s.section, 16, true)?;
        let row = text(&format!("seats[{i}].row"), &s.row, 16, true)?;
        if !(1..=100_000).contains(&s.number) {
            return Err(ApiError::invalid(
                &format!("seats[{i}].number"),
                "seat number must be between 1 and 100000",
            ));
        }
        if !(Money::new(1)..=MAX_PRICE).contains(&s.price) {
            return Err(ApiError::invalid(
                &format!("seats[{i}].price"),
                format!("price must be between 1 and {MAX_PRICE}"),
            ));
        }
        if !seen.insert((section.clone(), row.clone(), s.number)) {
            return Err(ApiError::invalid(
                &format!("seats[{i}]"),
                "the same seat appears twice in the request",
            ));
        }
        cols.section.push(section);
        cols.row.push(row);
        cols.number.push(s.number);
        cols.price.push(s.price);
    }
    Ok(cols)
}

#[derive(Serialize, Deserialize, ToSchema, Debug, sqlx::FromRow)]
pub struct ConcertView {
    #[sqlx(rename = "concert_id")]
    pub id: ConcertId,
    pub title: String,
    pub venue: String,
    pub queue_id: Option<String>,
    pub max_holds_per_user: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug, sqlx::FromRow)]
pub struct ScheduleView {
    #[sqlx(rename = "schedule_id")]
    pub id: ScheduleId,
    pub concert_id: ConcertId,
    pub starts_at: DateTime<Utc>,
    /// Seats neither sold nor under a live hold.
    pub available_seats: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SeatStatus {
    Free,
    Held,
    Sold,
}

/// A seat's status at `now`: an expired hold is free, whether or not it was swept yet.
pub fn seat_status(
    sold: bool,
    hold_expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> SeatStatus {
    if sold {
        SeatStatus::Sold
    } else if hold_expires_at.is_some_and(|e| e > now) {
        SeatStatus::Held
    } else {
        SeatStatus::Free
    }
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct SeatView {
    pub id: SeatId,
    pub schedule_id: ScheduleId,
    pub section: String,
    pub row: String,
    pub number: i32,
    #[schema(value_type = i64)]
    pub price: Money,
    pub status: SeatStatus,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct Items<T> {
    pub items: Vec<T>,
}

#[derive(Serialize, Deserialize, ToSchema, Debug)]
pub struct ConcertDetail {
    #[serde(flatten)]
    pub concert: ConcertView,
    pub schedules: Vec<ScheduleView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(section: &str, number: i32, price: i64) -> NewSeat {
        NewSeat {
            section: section.into(),
            row: "1".into(),
            number,
            price: Money::new(price),
        }
    }

    #[test]
    fn seats_are_validated_field_by_field() {
        assert!(parse_seats(&[seat("A", 1, 10), seat("A", 2, 10)]).is_ok());
        let e = parse_seats(&[seat("", 1, 10)]).unwrap_err();
        assert_eq!(e.kind(), "validation-failed");
        assert!(parse_seats(&[seat("A", 0, 10)]).is_err());
        assert!(parse_seats(&[seat("A", 1, 0)]).is_err());
        assert!(parse_seats(&[seat("A", 1, MAX_PRICE.minor() + 1)]).is_err());
        assert!(parse_seats(&[seat("A", 1, 10), seat("A", 1, 20)]).is_err());
    }

    #[test]
    fn an_expired_hold_is_free() {
        let now = Utc::now();
        assert_eq!(seat_status(false, None, now), SeatStatus::Free);
        assert_eq!(
            seat_status(false, Some(now + chrono::Duration::seconds(1)), now),
            SeatStatus::Held
        );
        assert_eq!(seat_status(false, Some(now), now), SeatStatus::Free);
        assert_eq!(seat_status(true, None, now), SeatStatus::Sold);
    }

    #[test]
    fn concerts_need_a_title_and_a_valid_queue() {
        let c = |title: &str, queue: Option<&str>| NewConcert {
            title: title.into(),
            venue: String::new(),
            queue_id: queue.map(Into::into),
            max_holds_per_user: None,
            schedules: vec![],
        };
        assert!(c("Gala", Some("concert-42")).parse().is_ok());
        assert!(c("  ", None).parse().is_err());
        assert!(c("Gala", Some("Bad Queue")).parse().is_err());
    }
}
