//! Pure order rules: normalising requested lines, totals, coupon discounts, and what a
//! waiting-room pass allows.

use std::collections::BTreeMap;

use crate::{error::ApiError, goods::GoodsId, platform::money::Money};

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: i64 = 1_000;

/// A goods waiting-room pass — one admitted session — pays for one order, as a ticketing
/// waiting room's pass opens one purchase session: `previous` is the order it already paid
/// for (cancelled or not). Both order paths call this, with what PostgreSQL holds for the
/// session (`queue_pass_orders`, written in the order's own transaction). A keyed retry of
/// the paid order replays before any rule runs.
pub fn pass_unused(queue: &str, previous: Option<i64>) -> Result<(), ApiError> {
    match previous {
        None => Ok(()),
        Some(order) => Err(ApiError::forbidden(
            "queue-pass-used",
            format!(
                "this waiting-room pass already paid for order {order}; join waiting room {queue} again to order more"
            ),
        )
        .with_extra(serde_json::json!({"order_id": order, "queue_id": queue}))),
    }
}

/// Merges repeated goods, checks quantities, and sorts by goods id — the order in which
/// stock rows are locked, so two orders for the same items can never deadlock.
pub fn normalise_lines(lines: &[(i64, i64)]) -> Result<Vec<(GoodsId, i32)>, ApiError> {
    if lines.is_empty() {
        return Err(ApiError::invalid(
            "items",
            "an order needs at least one item",
        ));
    }
    if lines.len() > MAX_LINES {
        return Err(ApiError::invalid(
            "items",
            format!("an order may have at most {MAX_LINES} items"),
        ));
    }
    let mut merged: BTreeMap<i64, i64> = BTreeMap::new();
    for &(goods_id, quantity) in lines {
        if goods_id <= 0 {
            return Err(ApiError::invalid(
                "goods_id",
                format!("goods_id must be positive, got {goods_id}"),
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            return Err(ApiError::invalid(
                "quantity",
                format!("quantity must be between 1 and {MAX_QUANTITY}, got {quantity}"),
            ));
        }
        let q = merged.entry(goods_id).or_default();
        *q += quantity;
        if *q > MAX_QUANTITY {
            return Err(ApiError::invalid(
                "quantity",
                format!("at most {MAX_QUANTITY} of goods {goods_id} per order"),
            ));
        }
    }
    Ok(merged
        .into_iter()
        .map(|(g, q)| (GoodsId(g), q as i32))
        .collect())
}

/// Σ price × quantity, refusing overflow.
pub fn subtotal(lines: impl IntoIterator<Item = (Money, i32)>) -> Result<Money, ApiError> {
    lines
        .into_iter()
        .try_fold(Money::ZERO, |acc, (price, qty)| {
            acc.checked_add(price.checked_mul(qty)?)
        })
        .map_err(|_| ApiError::invalid("items", "order total is too large"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    Amount(Money),
    Percent(i32),
}

/// The discount a coupon gives on `subtotal`: never more than the subtotal; percentages
/// round down so the shop never gives away a fraction of a won more than promised.
pub fn discount(d: Discount, subtotal: Money) -> Money {
    match d {
        Discount::Amount(a) => a.min(subtotal),
        // 1..=100 percent of a subtotal cannot leave the range
        Discount::Percent(p) => subtotal.percent(p).unwrap_or(subtotal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_are_merged_and_sorted() {
        let lines = normalise_lines(&[(9, 1), (3, 2), (9, 4)]).unwrap();
        assert_eq!(lines, vec![(GoodsId(3), 2), (GoodsId(9), 5)]);
    }

    #[test]
    fn bad_lines_are_refused() {
        assert!(normalise_lines(&[]).is_err());
        assert!(normalise_lines(&[(1, 0)]).is_err());
        assert!(normalise_lines(&[(1, -3)]).is_err());
        assert!(normalise_lines(&[(0, 1)]).is_err());
        assert!(normalise_lines(&[(1, 600), (1, 600)]).is_err());
        assert!(normalise_lines(&vec![(1, 1); 51]).is_err());
    }

    #[test]
    fn subtotal_refuses_overflow() {
        let m = Money::new;
        assert_eq!(subtotal([(m(100), 2), (m(5), 1)]).unwrap(), m(205));
        assert!(subtotal([(m(i64::MAX), 2)]).is_err());
    }

    proptest! {
        #[test]
        fn discount_never_exceeds_subtotal(sub in 0i64..1_000_000_000_000, amount in 1i64..1_000_000_000_000, pct in 1i32..=100) {
            let (sub, amount) = (Money::new(sub), Money::new(amount));
            prop_assert!(discount(Discount::Amount(amount), sub) <= sub);
            let d = discount(Discount::Percent(pct), sub);
            prop_assert!(d <= sub && d >= Money::ZERO);
        }
    }
}
