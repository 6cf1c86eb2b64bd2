//! Pure wallet rules.

/// The largest balance a wallet may hold. The `wallets_balance_max` check constraint holds
/// the same number and stays the last word; this copy lets a batch of charges refuse the one
/// that would cross it without failing the others.
pub const BALANCE_MAX: i64 = 1_000_000_000_000_000;

/// Applies positive charges to `balance` in arrival order: each one's balance afterwards, or
/// `None` for a charge refused because it would exceed [`BALANCE_MAX`] (later, smaller
/// charges may still fit, as they would one request at a time).
pub fn apply_charges(balance: i64, amounts: &[i64]) -> Vec<Option<i64>> {
    let mut balance = balance;
    amounts
        .iter()
        .map(|&amount| {
            let after = balance.checked_add(amount).filter(|b| *b <= BALANCE_MAX)?;
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
        let start = BALANCE_MAX - 10;
        assert_eq!(
            apply_charges(start, &[5, 6, 5, 1]),
            [Some(start + 5), None, Some(BALANCE_MAX), None]
        );
    }

    proptest! {
        #[test]
        fn balances_run_up_within_the_limit(
            start in 0i64..=BALANCE_MAX,
            amounts in proptest::collection::vec(1i64..=BALANCE_MAX / 4, 0..50),
        ) {
            let after = apply_charges(start, &amounts);
            prop_assert_eq!(after.len(), amounts.len());
            let mut balance = start;
            for (amount, a) in amounts.iter().zip(&after) {
                match a {
                    Some(b) => {
                        prop_assert_eq!(*b, balance + amount);
                        prop_assert!(*b <= BALANCE_MAX);
                        balance = *b;
                    }
                    None => prop_assert!(balance + amount > BALANCE_MAX),
                }
            }
        }
    }
}
