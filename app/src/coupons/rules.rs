//! Which grants Redis accepted PostgreSQL writes: the pure plan of one grant batch.
//!
//! Redis is the fast gate; PostgreSQL has the last word. In arrival order, a user who already
//! holds a coupon of the campaign is refused (`already-issued`), and once the room (total -
//! issued) is used up everybody else is refused (`sold-out`): the cap and one-per-user hold
//! whatever Redis counted after a loss.

use std::collections::HashSet;

use crate::platform::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Written: the caller holds a persisted coupon.
    Issued,
    /// The user already holds one (Redis had forgotten it).
    AlreadyHolds,
    /// No room left in PostgreSQL (Redis counted too few holders).
    SoldOut,
}

/// One verdict per user, in order. `room` is what the campaign row still allows; `holders`
/// are the users among `users` who already hold a coupon of it.
pub fn plan(room: i64, holders: &HashSet<i64>, users: &[i64]) -> Vec<Grant> {
    let mut left = room.max(0);
    let mut taken = HashSet::with_capacity(users.len());
    users
        .iter()
        .map(|u| {
            if holders.contains(u) || !taken.insert(*u) {
                Grant::AlreadyHolds
            } else if left == 0 {
                taken.remove(u);
                Grant::SoldOut
            } else {
                left -= 1;
                Grant::Issued
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn holders_are_refused_and_the_room_is_given_in_order() {
        let holders = HashSet::from([2]);
        assert_eq!(
            plan(2, &holders, &[1, 2, 3, 4]),
            [
                Grant::Issued,
                Grant::AlreadyHolds,
                Grant::Issued,
                Grant::SoldOut
            ]
        );
        assert_eq!(plan(0, &HashSet::new(), &[1]), [Grant::SoldOut]);
        assert_eq!(plan(-3, &HashSet::new(), &[1]), [Grant::SoldOut]);
    }

    #[test]
    fn a_user_twice_in_a_batch_gets_one_coupon() {
        assert_eq!(
            plan(5, &HashSet::new(), &[1, 1]),
            [Grant::Issued, Grant::AlreadyHolds]
        );
        // refused for room, then asked again: still refused for room
        assert_eq!(
            plan(1, &HashSet::new(), &[1, 2, 2]),
            [Grant::Issued, Grant::SoldOut, Grant::SoldOut]
        );
    }

    proptest! {
        #[test]
        fn never_beyond_the_room_never_twice_never_a_holder(
            room in -2i64..20,
            holders in proptest::collection::hash_set(0i64..30, 0..10),
            users in proptest::collection::vec(0i64..30, 0..60),
        ) {
            let verdicts = plan(room, &holders, &users);
            prop_assert_eq!(verdicts.len(), users.len());
            let issued: Vec<i64> = users.iter().zip(&verdicts)
                .filter(|(_, v)| **v == Grant::Issued).map(|(u, _)| *u).collect();
            prop_assert!(issued.len() as i64 <= room.max(0));
            let distinct: HashSet<i64> = issued.iter().copied().collect();
            prop_assert_eq!(distinct.len(), issued.len());
            prop_assert!(issued.iter().all(|u| !holders.contains(u)));
            // first come, first served: a sold-out answer means the room was full at its turn
            for (i, v) in verdicts.iter().enumerate() {
                if *v == Grant::SoldOut {
                    let before = verdicts[..i].iter().filter(|v| **v == Grant::Issued).count();
                    prop_assert_eq!(before as i64, room.max(0));
                }
            }
        }
    }
}

/// What a coupon takes off an order (its campaign's `discount_amount` or `discount_percent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    Amount(Money),
    Percent(i32),
}

impl Discount {
    /// The campaign row's two columns, exactly one of which is set.
    pub fn of_campaign(amount: Option<Money>, percent: Option<i32>) -> Option<Self> {
        match (amount, percent) {
            (Some(a), None) => Some(Self::Amount(a)),
            (None, Some(p)) => Some(Self::Percent(p)),
            _ => None,
        }
    }

    /// The discount on `subtotal`: never more than the subtotal; percentages round down so
    /// the shop never gives away a fraction of a won more than promised.
    pub fn on(self, subtotal: Money) -> Money {
        match self {
            Self::Amount(a) => a.min(subtotal),
            // 1..=100 percent of a subtotal cannot leave the range
            Self::Percent(p) => subtotal.percent(p).unwrap_or(subtotal),
        }
    }
}

#[cfg(test)]
mod discount_tests {
    use super::Discount;
    use crate::platform::money::Money;
    use proptest::prelude::*;

    #[test]
    fn a_campaign_has_exactly_one_kind_of_discount() {
        assert_eq!(
            Discount::of_campaign(Some(Money::new(5)), None),
            Some(Discount::Amount(Money::new(5)))
        );
        assert_eq!(
            Discount::of_campaign(None, Some(10)),
            Some(Discount::Percent(10))
        );
        assert_eq!(Discount::of_campaign(None, None), None);
        assert_eq!(Discount::of_campaign(Some(Money::new(5)), Some(10)), None);
        assert_eq!(Discount::Percent(33).on(Money::new(1_001)), Money::new(330));
    }

    proptest! {
        #[test]
        fn discount_never_exceeds_subtotal(sub in 0i64..1_000_000_000_000, amount in 1i64..1_000_000_000_000, pct in 1i32..=100) {
            let (sub, amount) = (Money::new(sub), Money::new(amount));
            prop_assert!(Discount::Amount(amount).on(sub) <= sub);
            let d = Discount::Percent(pct).on(sub);
            prop_assert!(d <= sub && d >= Money::ZERO);
        }
    }
}
