//! Money: an amount in the currency's minor unit (won), as PostgreSQL's `bigint` columns and
//! the JSON integers hold it.
//!
//! The type is transparent on the wire and in SQL (an integer either way), so nothing a client
//! or a table sees changes. Its arithmetic is checked only: there is no `+`, `-` or `*`, so an
//! amount cannot wrap or panic on overflow unnoticed; each operation returns
//! [`MoneyOverflow`] and the caller says what that means for its request.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An amount of money in minor units (won). Amounts may be negative only as the result of a
/// subtraction; the domains' rules say which amounts they accept.
///
/// Deliberately no `ToSchema`: a documented field of this type says
/// `#[schema(value_type = i64)]` (or `Option<i64>`), so the OpenAPI document shows the plain
/// integer it always showed.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Money(i64);

/// An amount beyond what [`Money`] can hold (±9.2 × 10^18 minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("amount out of range")]
pub struct MoneyOverflow;

impl Money {
    pub const ZERO: Self = Self(0);
    /// The largest amount; a displayed sum that would pass it shows this (the cart).
    pub const MAX: Self = Self(i64::MAX);

    /// `minor` minor units (won).
    pub const fn new(minor: i64) -> Self {
        Self(minor)
    }

    /// The amount in minor units, for SQL array binds and comparisons with limits.
    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_add(self, other: Self) -> Result<Self, MoneyOverflow> {
        self.0.checked_add(other.0).map(Self).ok_or(MoneyOverflow)
    }

    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyOverflow> {
        self.0.checked_sub(other.0).map(Self).ok_or(MoneyOverflow)
    }

    /// The price of `quantity` units at `self` each.
    pub fn checked_mul(self, quantity: impl Into<i64>) -> Result<Self, MoneyOverflow> {
        self.0
            .checked_mul(quantity.into())
            .map(Self)
            .ok_or(MoneyOverflow)
    }

    /// `percent`% of the amount, rounded toward zero (a discount never gives away a fraction
    /// of a won more than promised). Exact for any amount: the product is taken in 128 bits.
    pub fn percent(self, percent: i32) -> Result<Self, MoneyOverflow> {
        let v = i128::from(self.0) * i128::from(percent) / 100;
        i64::try_from(v).map(Self).map_err(|_| MoneyOverflow)
    }

    /// Σ of `amounts`, refusing overflow.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Self>) -> Result<Self, MoneyOverflow> {
        amounts
            .into_iter()
            .try_fold(Self::ZERO, |acc, a| acc.checked_add(a))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(v: i128) -> Result<Money, MoneyOverflow> {
        i64::try_from(v).map(Money).map_err(|_| MoneyOverflow)
    }

    #[test]
    fn json_and_display_are_the_bare_integer() {
        let m = Money::new(12_345);
        assert_eq!(serde_json::to_string(&m).unwrap(), "12345");
        assert_eq!(serde_json::from_str::<Money>("-7").unwrap(), Money::new(-7));
        assert_eq!(m.to_string(), "12345");
        assert!(serde_json::from_str::<Money>("1.5").is_err());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let max = Money::new(i64::MAX);
        assert_eq!(max.checked_add(Money::new(1)), Err(MoneyOverflow));
        assert_eq!(
            Money::new(i64::MIN).checked_sub(Money::new(1)),
            Err(MoneyOverflow)
        );
        assert_eq!(max.checked_mul(2), Err(MoneyOverflow));
        assert_eq!(max.percent(200), Err(MoneyOverflow));
        assert_eq!(max.percent(100), Ok(max));
        assert_eq!(Money::checked_sum([max, Money::new(1)]), Err(MoneyOverflow));
        assert_eq!(Money::checked_sum([]), Ok(Money::ZERO));
        assert_eq!(MoneyOverflow.to_string(), "amount out of range");
    }

    #[test]
    fn percent_rounds_toward_zero() {
        assert_eq!(Money::new(999).percent(10), Ok(Money::new(99)));
        assert_eq!(Money::new(1).percent(99), Ok(Money::ZERO));
        assert_eq!(Money::new(-999).percent(10), Ok(Money::new(-99)));
    }

    proptest! {
        #[test]
        fn checked_ops_are_exact_or_refused(a: i64, b: i64, q in -5_000i64..5_000) {
            let (ma, mb) = (Money::new(a), Money::new(b));
            prop_assert_eq!(ma.checked_add(mb), exact(i128::from(a) + i128::from(b)));
            prop_assert_eq!(ma.checked_sub(mb), exact(i128::from(a) - i128::from(b)));
            prop_assert_eq!(ma.checked_mul(q), exact(i128::from(a) * i128::from(q)));
            prop_assert_eq!(ma.checked_add(mb), mb.checked_add(ma));
        }

        #[test]
        fn add_then_sub_is_the_identity(a in -(1i64 << 62)..(1i64 << 62), b in -(1i64 << 62)..(1i64 << 62)) {
            let (ma, mb) = (Money::new(a), Money::new(b));
            prop_assert_eq!(ma.checked_add(mb).unwrap().checked_sub(mb), Ok(ma));
        }

        #[test]
        fn a_sum_is_the_exact_total_or_refused(v in proptest::collection::vec(any::<i64>(), 0..8)) {
            let exact_total: i128 = v.iter().map(|x| i128::from(*x)).sum();
            let sum = Money::checked_sum(v.iter().copied().map(Money::new));
            // a sum that passes out of range and back may be refused; one that fits at
            // every step is exact
            if let Ok(s) = sum {
                prop_assert_eq!(i128::from(s.minor()), exact_total);
            } else {
                let leaves_range = v
                    .iter()
                    .scan(0i128, |acc, x| {
                        *acc += i128::from(*x);
                        Some(*acc)
                    })
                    .any(|p| i64::try_from(p).is_err());
                prop_assert!(leaves_range);
            }
        }

        #[test]
        fn a_percentage_of_a_non_negative_amount_stays_within_it(a in 0i64..=i64::MAX, p in 0i32..=100) {
            let d = Money::new(a).percent(p).unwrap();
            prop_assert!(d >= Money::ZERO && d <= Money::new(a));
            prop_assert_eq!(i128::from(d.minor()), i128::from(a) * i128::from(p) / 100);
        }

        #[test]
        fn json_round_trips_as_the_integer(a: i64) {
            let s = serde_json::to_string(&Money::new(a)).unwrap();
            prop_assert_eq!(&s, &a.to_string());
            prop_assert_eq!(serde_json::from_str::<Money>(&s).unwrap(), Money::new(a));
        }
    }
}
