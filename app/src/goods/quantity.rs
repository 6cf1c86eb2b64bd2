//! How many units of one goods item an order line holds.

use crate::error::ApiError;

/// A quantity of one goods item in an order: 1 to [`Quantity::MAX`]. (A cart row may also be
/// set to 0, which removes it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i32);

impl Quantity {
    /// The most of one goods item an order (or a cart row) may hold.
    pub const MAX: i64 = 1_000;

    /// 422 on the `quantity` field unless `raw` is 1 to [`Self::MAX`].
    pub fn parse(raw: i64) -> Result<Self, ApiError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw as i32))
        } else {
            Err(ApiError::invalid(
                "quantity",
                format!("quantity must be between 1 and {}, got {raw}", Self::MAX),
            ))
        }
    }

    /// Both together, if they still fit in one line: `None` past [`Self::MAX`].
    pub fn plus(self, other: Self) -> Option<Self> {
        let sum = i64::from(self.0) + i64::from(other.0);
        (sum <= Self::MAX).then_some(Self(sum as i32))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_range_is_refused_with_the_field_named() {
        for raw in [0, -3, Quantity::MAX + 1] {
            let e = Quantity::parse(raw).unwrap_err();
            assert_eq!(e.kind(), "validation-failed");
            assert_eq!(
                e.detail(),
                format!("quantity must be between 1 and 1000, got {raw}")
            );
        }
        assert_eq!(Quantity::parse(Quantity::MAX).unwrap().get(), 1_000);
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_one_to_max(raw in -10i64..2_000) {
            prop_assert_eq!(Quantity::parse(raw).is_ok(), (1..=Quantity::MAX).contains(&raw));
        }

        #[test]
        fn a_sum_never_passes_max(a in 1i64..=1_000, b in 1i64..=1_000) {
            let sum = Quantity::parse(a).unwrap().plus(Quantity::parse(b).unwrap());
            prop_assert_eq!(sum.map(Quantity::get), (a + b <= 1_000).then_some((a + b) as i32));
        }
    }
}
