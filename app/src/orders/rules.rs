//! Pure order rules: normalising requested lines, totals, whether a goods line may be
//! ordered now ([`judge_line`], the one rule both order paths apply), and what a
//! waiting-room pass allows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{
    error::ApiError,
    goods::{GoodsId, Quantity},
    platform::{ids::OrderId, money::Money},
    queue::PassCheck,
};

pub const MAX_LINES: usize = 50;

/// What a goods row says about when, and with which pass, it may be ordered.
#[derive(Debug, Clone, Copy)]
pub struct SaleTerms<'a> {
    pub id: GoodsId,
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// The waiting room an order needs an admitted pass of.
    pub queue_id: Option<&'a str>,
}

/// Whether a line of `goods` may be ordered at `now` with `pass` (checked ahead, before the
/// goods were known): not before the sale starts (`sale-not-started`), and behind a waiting
/// room only with an admitted pass of that room (`queue-pass-*`, as `queue::require_pass`
/// answers). Both order paths judge every line with it, the single-order path in line order,
/// the group commit in arrival order; whether the pass already paid ([`pass_unused`]) and
/// money and stock come after it.
pub fn judge_line(
    goods: SaleTerms<'_>,
    now: DateTime<Utc>,
    pass: &PassCheck,
) -> Result<(), ApiError> {
    if let Some(start) = goods.sale_starts_at
        && start > now
    {
        return Err(sale_not_started(goods.id, start));
    }
    if let Some(queue) = goods.queue_id {
        pass.for_queue(queue)?;
    }
    Ok(())
}

pub fn sale_not_started(id: GoodsId, start: DateTime<Utc>) -> ApiError {
    ApiError::conflict(
        "sale-not-started",
        format!("goods {} go on sale at {}", id.0, start.to_rfc3339()),
    )
}

pub fn out_of_stock(id: GoodsId) -> ApiError {
    ApiError::conflict(
        "out-of-stock",
        format!("goods {} does not have enough stock left", id.0),
    )
    .with_extra(serde_json::json!({"goods_id": id.0}))
}

/// A goods waiting-room pass — one admitted session — pays for one order, as a ticketing
/// waiting room's pass opens one purchase session: `previous` is the order it already paid
/// for (cancelled or not). Both order paths call this, with what PostgreSQL holds for the
/// session (`queue_pass_orders`, written in the order's own transaction). A keyed retry of
/// the paid order replays before any rule runs.
pub fn pass_unused(queue: &str, previous: Option<OrderId>) -> Result<(), ApiError> {
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
    let mut merged: BTreeMap<i64, Quantity> = BTreeMap::new();
    for &(goods_id, quantity) in lines {
        if goods_id <= 0 {
            return Err(ApiError::invalid(
                "goods_id",
                format!("goods_id must be positive, got {goods_id}"),
            ));
        }
        let quantity = Quantity::parse(quantity)?;
        let sum = match merged.get(&goods_id) {
            None => Some(quantity),
            Some(q) => q.plus(quantity),
        };
        let Some(sum) = sum else {
            return Err(ApiError::invalid(
                "quantity",
                format!("at most {} of goods {goods_id} per order", Quantity::MAX),
            ));
        };
        merged.insert(goods_id, sum);
    }
    Ok(merged
        .into_iter()
        .map(|(g, q)| (GoodsId(g), q.get()))
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

    fn terms(starts_in_mins: Option<i64>, queue: Option<&str>) -> SaleTerms<'_> {
        SaleTerms {
            id: GoodsId(7),
            sale_starts_at: starts_in_mins.map(|m| now() + chrono::Duration::minutes(m)),
            queue_id: queue,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn admitted(queue: &str) -> PassCheck {
        PassCheck::Admitted {
            queue: queue.into(),
            session_expires_ms: 1,
        }
    }

    fn verdict(goods: SaleTerms<'_>, pass: &PassCheck) -> Option<&'static str> {
        judge_line(goods, now(), pass).err().map(|e| e.kind())
    }

    #[test]
    fn a_line_waits_for_its_sale_then_for_its_waiting_room() {
        let none = PassCheck::Missing;
        assert_eq!(verdict(terms(None, None), &none), None);
        assert_eq!(
            verdict(terms(Some(0), None), &none),
            None,
            "the start itself is on sale"
        );
        assert_eq!(verdict(terms(Some(-5), None), &none), None);
        assert_eq!(
            verdict(terms(Some(5), None), &none),
            Some("sale-not-started")
        );
        // the sale start comes first, even for an admitted pass
        assert_eq!(
            verdict(terms(Some(5), Some("q")), &admitted("q")),
            Some("sale-not-started")
        );
        assert_eq!(
            verdict(terms(None, Some("q")), &none),
            Some("queue-pass-missing")
        );
        assert_eq!(verdict(terms(None, Some("q")), &admitted("q")), None);
        assert_eq!(
            verdict(terms(None, Some("q")), &admitted("r")),
            Some("queue-pass-wrong-queue")
        );
        // a pass is no use (and no harm) for goods outside any waiting room
        assert_eq!(verdict(terms(None, None), &admitted("r")), None);
    }

    #[test]
    fn a_refused_pass_gives_its_own_answer() {
        let refused = PassCheck::Refused {
            queue: Some("q".into()),
            error: ApiError::forbidden("queue-pass-expired", "expired"),
        };
        assert_eq!(
            verdict(terms(None, Some("q")), &refused),
            Some("queue-pass-expired")
        );
        assert_eq!(
            verdict(terms(None, Some("other")), &refused),
            Some("queue-pass-wrong-queue")
        );
        assert_eq!(verdict(terms(None, None), &refused), None);
    }

    #[test]
    fn merged_quantities_stop_at_the_maximum() {
        assert_eq!(
            normalise_lines(&[(1, 600), (1, 400)]).unwrap(),
            vec![(GoodsId(1), 1_000)]
        );
        let e = normalise_lines(&[(1, 600), (1, 401)]).unwrap_err();
        assert_eq!(e.detail(), "at most 1000 of goods 1 per order");
        let e = normalise_lines(&[(1, 1_001)]).unwrap_err();
        assert_eq!(e.detail(), "quantity must be between 1 and 1000, got 1001");
    }

    proptest! {
        /// Only the sale start and the waiting room decide: an admitted pass of the goods'
        /// room (or no room) and a started sale always pass; anything else never does.
        #[test]
        fn judge_line_passes_exactly_started_sales_with_the_right_pass(
            starts in proptest::option::of(-120i64..120),
            queue in proptest::option::of(0u8..3),
            pass in proptest::option::of(0u8..3),
        ) {
            let queue = queue.map(|q| format!("q{q}"));
            let pass = pass.map_or(PassCheck::Missing, |p| admitted(&format!("q{p}")));
            let goods = terms(starts, queue.as_deref());
            let started = starts.is_none_or(|m| m <= 0);
            let pass_ok = match (&queue, &pass) {
                (None, _) => true,
                (Some(q), PassCheck::Admitted { queue: p, .. }) => q == p,
                _ => false,
            };
            prop_assert_eq!(judge_line(goods, now(), &pass).is_ok(), started && pass_ok);
        }
    }
}
