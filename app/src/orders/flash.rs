//! The pure part of a group-committed flash-sale batch: given the goods row and the wallets
//! as the batch locked them, which orders are paid and which are refused, and why.
//!
//! Every order is judged as the single-order path would judge it at that point of the
//! arrival order: unknown goods, then the same [`rules::judge_line`] (sale started, admitted
//! waiting-room pass), the pass not used by an earlier order ([`rules::pass_unused`]), total,
//! balance, then stock. Stock goes first come, first served; an order refused for stock or
//! money takes nothing from the others.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::rules::{self, SaleTerms};
use crate::{
    auth::UserId,
    error::ApiError,
    goods::GoodsId,
    platform::{ids::OrderId, money::Money},
    queue::PassCheck,
    wallet,
};

/// The goods row, locked by the batch.
#[derive(Debug, Clone, FromRow)]
pub struct LockedGoods {
    pub price: Money,
    pub stock: i32,
    pub sale_starts_at: Option<DateTime<Utc>>,
    pub queue_id: Option<String>,
}

impl LockedGoods {
    pub fn terms(&self, id: GoodsId) -> SaleTerms<'_> {
        SaleTerms {
            id,
            sale_starts_at: self.sale_starts_at,
            queue_id: self.queue_id.as_deref(),
        }
    }
}

/// One order of the batch.
pub struct Ask<'a> {
    pub user: UserId,
    pub quantity: i32,
    pub pass: &'a PassCheck,
    /// The order this pass's session already paid for, if any.
    pub pass_order: Option<OrderId>,
}

#[derive(Debug)]
pub enum Verdict {
    /// Paid: `total` leaves the wallet, `quantity` leaves the stock.
    Paid {
        total: Money,
    },
    Refused(ApiError),
}

#[derive(Debug)]
pub struct Plan {
    /// One per ask, in the same order.
    pub verdicts: Vec<Verdict>,
    /// Units sold by the batch.
    pub sold: i32,
    /// Stock once the batch commits.
    pub stock_left: i32,
}

/// Judges `asks` in arrival order against the locked goods row (`None`: unknown or deleted)
/// and the locked wallet balances (a user without a wallet has 0).
pub fn plan(
    id: GoodsId,
    goods: Option<&LockedGoods>,
    now: DateTime<Utc>,
    balances: &HashMap<UserId, Money>,
    asks: &[Ask<'_>],
) -> Plan {
    let Some(goods) = goods else {
        return Plan {
            verdicts: asks
                .iter()
                .map(|_| Verdict::Refused(ApiError::not_found(&format!("goods {}", id.0))))
                .collect(),
            sold: 0,
            stock_left: 0,
        };
    };
    let mut balances = balances.clone();
    let mut left = goods.stock;
    let verdicts = asks
        .iter()
        .map(
            |ask| match judge(id, goods, now, &mut balances, left, ask) {
                Ok(total) => {
                    left -= ask.quantity;
                    Verdict::Paid { total }
                }
                Err(e) => Verdict::Refused(e),
            },
        )
        .collect();
    Plan {
        verdicts,
        sold: goods.stock - left,
        stock_left: left,
    }
}

/// One order against what is left; on success its total has left the balance.
fn judge(
    id: GoodsId,
    goods: &LockedGoods,
    now: DateTime<Utc>,
    balances: &mut HashMap<UserId, Money>,
    left: i32,
    ask: &Ask<'_>,
) -> Result<Money, ApiError> {
    rules::judge_line(goods.terms(id), now, ask.pass)?;
    if let Some(queue) = &goods.queue_id {
        rules::pass_unused(queue, ask.pass_order)?;
    }
    let total = rules::subtotal([(goods.price, ask.quantity)])?;
    if total.is_positive() {
        let balance = balances.entry(ask.user).or_insert(Money::ZERO);
        if *balance < total {
            return Err(wallet::insufficient_balance(total));
        }
        *balance = balance.checked_sub(total).map_err(ApiError::internal)?;
    }
    if left < ask.quantity {
        return Err(rules::out_of_stock(id));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: GoodsId = GoodsId(7);

    fn goods(price: i64, stock: i32) -> LockedGoods {
        LockedGoods {
            price: Money::new(price),
            stock,
            sale_starts_at: None,
            queue_id: None,
        }
    }

    fn kind(v: &Verdict) -> &'static str {
        match v {
            Verdict::Paid { .. } => "paid",
            Verdict::Refused(e) => e.kind(),
        }
    }

    #[test]
    fn stock_goes_in_arrival_order_and_refusals_take_nothing() {
        let pass = PassCheck::Missing;
        let balances = HashMap::from([
            (UserId(1), Money::new(100)),
            (UserId(2), Money::new(5)),
            (UserId(3), Money::new(100)),
            (UserId(4), Money::new(100)),
        ]);
        let asks: Vec<Ask<'_>> = [(1, 1), (2, 1), (3, 2), (4, 1)]
            .iter()
            .map(|&(u, q)| Ask {
                user: UserId(u),
                quantity: q,
                pass: &pass,
                pass_order: None,
            })
            .collect();
        let p = plan(ID, Some(&goods(10, 2)), Utc::now(), &balances, &asks);
        let kinds: Vec<_> = p.verdicts.iter().map(kind).collect();
        // user 2 cannot pay, user 3 wants more than is left, user 4 takes the last unit
        assert_eq!(
            kinds,
            ["paid", "insufficient-balance", "out-of-stock", "paid"]
        );
        assert_eq!((p.sold, p.stock_left), (2, 0));
    }

    #[test]
    fn goods_rules_come_before_money_and_stock() {
        let missing = PassCheck::Missing;
        let admitted = PassCheck::Admitted {
            queue: "q".into(),
            session_expires_ms: 1,
        };
        let ask = |pass| Ask {
            user: UserId(1),
            quantity: 1,
            pass,
            pass_order: None,
        };
        let none = HashMap::new();
        let p = plan(ID, None, Utc::now(), &none, &[ask(&missing)]);
        assert_eq!(kind(&p.verdicts[0]), "not-found");
        let mut later = goods(10, 0);
        later.sale_starts_at = Some(Utc::now() + chrono::Duration::hours(1));
        let p = plan(ID, Some(&later), Utc::now(), &none, &[ask(&missing)]);
        assert_eq!(kind(&p.verdicts[0]), "sale-not-started");
        let mut queued = goods(10, 0);
        queued.queue_id = Some("q".into());
        let p = plan(
            ID,
            Some(&queued),
            Utc::now(),
            &none,
            &[ask(&missing), ask(&admitted)],
        );
        assert_eq!(kind(&p.verdicts[0]), "queue-pass-missing");
        assert_eq!(kind(&p.verdicts[1]), "insufficient-balance");
        // an admitted pass that already paid for an order pays for no other
        let used = Ask {
            pass_order: Some(OrderId(41)),
            ..ask(&admitted)
        };
        let p = plan(ID, Some(&queued), Utc::now(), &none, &[used]);
        assert_eq!(kind(&p.verdicts[0]), "queue-pass-used");
        // free goods need no wallet
        let p = plan(ID, Some(&goods(0, 1)), Utc::now(), &none, &[ask(&missing)]);
        assert!(matches!(
            p.verdicts[0],
            Verdict::Paid { total: Money::ZERO }
        ));
    }

    proptest! {
        #[test]
        fn never_oversells_nor_overdraws(
            stock in 0i32..40,
            price in 0i64..50,
            orders in proptest::collection::vec((0i64..12, 1i32..5), 0..80),
            funds in proptest::collection::vec(0i64..200, 12),
        ) {
            let pass = PassCheck::Missing;
            let balances: HashMap<UserId, Money> =
                funds.iter().enumerate().map(|(u, f)| (UserId(u as i64), Money::new(*f))).collect();
            let asks: Vec<Ask<'_>> = orders
                .iter()
                .map(|&(u, q)| Ask { user: UserId(u), quantity: q, pass: &pass, pass_order: None })
                .collect();
            let p = plan(ID, Some(&goods(price, stock)), Utc::now(), &balances, &asks);
            prop_assert_eq!(p.verdicts.len(), asks.len());
            prop_assert!(p.stock_left >= 0);
            prop_assert_eq!(p.sold + p.stock_left, stock);
            let mut sold = 0;
            let mut spent: HashMap<UserId, i64> = HashMap::new();
            let mut left = stock;
            for (ask, v) in asks.iter().zip(&p.verdicts) {
                match v {
                    Verdict::Paid { total } => {
                        prop_assert_eq!(total.minor(), price * i64::from(ask.quantity));
                        sold += ask.quantity;
                        left -= ask.quantity;
                        *spent.entry(ask.user).or_default() += total.minor();
                    }
                    // refused for stock only when it really did not fit at its turn
                    Verdict::Refused(e) if e.kind() == "out-of-stock" => prop_assert!(left < ask.quantity),
                    Verdict::Refused(e) => prop_assert_eq!(e.kind(), "insufficient-balance"),
                }
            }
            prop_assert_eq!(sold, p.sold);
            for (user, s) in spent {
                prop_assert!(s <= balances[&user].minor(), "user {:?} overdrawn", user);
            }
        }
    }
}
