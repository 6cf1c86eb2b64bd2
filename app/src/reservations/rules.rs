//! Pure rules of holds and payments.

use crate::error::ApiError;

/// What a payment finds when it locks the reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Held { live: bool },
    Confirmed,
    Expired,
}

impl Found {
    pub fn parse(status: &str, live: bool) -> Option<Self> {
        match status {
            "held" => Some(Self::Held { live }),
            "confirmed" => Some(Self::Confirmed),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// May this reservation be paid now? Paid already → 409 (a replay of the same
/// Idempotency-Key never gets here); hold lapsed → 410.
pub fn payable(found: Found) -> Result<(), ApiError> {
    match found {
        Found::Held { live: true } => Ok(()),
        Found::Held { live: false } | Found::Expired => Err(lapsed()),
        Found::Confirmed => Err(ApiError::conflict(
            "already-paid",
            "this reservation is already paid",
        )),
    }
}

/// 410 for a hold that lapsed before it was paid.
pub fn lapsed() -> ApiError {
    ApiError::gone(
        "hold-expired",
        "the hold on this seat has expired; hold the seat again if it is still free",
    )
}

/// May a user with `active` live holds on a schedule take another one?
pub fn may_hold(active: i64, max_per_user: i32) -> Result<(), ApiError> {
    if active < i64::from(max_per_user) {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "hold-limit",
            format!(
                "you already hold {active} seat(s) for this schedule; the limit is {max_per_user}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn only_a_live_hold_is_payable() {
        assert!(payable(Found::Held { live: true }).is_ok());
        assert_eq!(
            payable(Found::Held { live: false }).unwrap_err().status(),
            StatusCode::GONE
        );
        assert_eq!(
            payable(Found::Expired).unwrap_err().status(),
            StatusCode::GONE
        );
        assert_eq!(
            payable(Found::Confirmed).unwrap_err().status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            Found::parse("held", false),
            Some(Found::Held { live: false })
        );
        assert_eq!(Found::parse("bogus", true), None);
    }

    #[test]
    fn hold_limit() {
        assert!(may_hold(0, 1).is_ok());
        assert_eq!(may_hold(1, 1).unwrap_err().kind(), "hold-limit");
        assert!(may_hold(2, 3).is_ok());
    }
}
