//! Pure wallet rules.

use crate::platform::money::Money;

/// The largest balance a wallet may hold. The `wallets_balance_max` check constraint holds
/// the same number and stays the last word; this copy lets a batch of charges refuse the one
/// that would cross it without failing the others.
pub const BALANCE_MAX: Money = Money::new(1_000_000_000_000_000);

/// Applies positive charges to `balance` in arrival order: each one's balance afterwards, or
/// `None` for a charge refused because it would exceed [`BALANCE_MAX`] (later, smaller
/// charges may still fit, as they would one request at a time).
pub fn apply_charges(balance: Money, amounts: &[Money]) -> Vec<Option<Money>> {
    let mut balance = balance;
    amounts
        .iter()
        .map(|&amount| {
            let after = balance
                .checked_add(amount)
                .ok()
                .filter(|b| *b <= BALANCE_MAX)?;
            balance = after;
            Some(after)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_charge_past_the_limit_is_refused_alone() {
        let m = Money::new;
        let start = m(BALANCE_MAX.minor() - 10);
        assert_eq!(
            apply_charges(start, &[m(5), m(6), m(5), m(1)]),
            [Some(m(start.minor() + 5)), None, Some(BALANCE_MAX), None]
        );
        // an amount that overflows the type is refused like one over the limit
        assert_eq!(apply_charges(BALANCE_MAX, &[m(i64::MAX)]), [None]);
    }

    proptest! {
        #[test]
        fn balances_run_up_within_the_limit(
            start in 0i64..=BALANCE_MAX.minor(),
            amounts in proptest::collection::vec(1i64..=BALANCE_MAX.minor() / 4, 0..50),
        ) {
            let money: Vec<Money> = amounts.iter().copied().map(Money::new).collect();
            let after = apply_charges(Money::new(start), &money);
            let after: Vec<Option<i64>> = after.iter().map(|a| a.map(Money::minor)).collect();
            prop_assert_eq!(after.len(), amounts.len());
            let mut balance = start;
            for (amount, a) in amounts.iter().zip(&after) {
                match a {
                    Some(b) => {
                        prop_assert_eq!(*b, balance + amount);
                        prop_assert!(*b <= BALANCE_MAX.minor());
                        balance = *b;
                    }
                    None => prop_assert!(balance + amount > BALANCE_MAX.minor()),
                }
            }
        }
    }
}
