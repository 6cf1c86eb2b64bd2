//! Flash-sale orders (one goods item, no coupon, not from the cart), group-committed per goods
//! item: the concurrent orders for one hot stock row share one transaction.
//!
//! A batch runs a constant number of statements, whatever its size:
//! 1. idempotency claims for every keyed order (plus, only when some key is held elsewhere,
//!    one take-over and one lookup) — replays, 422 and 409 are answered from them;
//! 2. the buyers' wallets locked in user-id order;
//! 3. the goods row locked — the hot row last, as on the single-order path, so neither path
//!    can deadlock the other;
//! 4. the pure plan ([`super::flash`]) decides each order in arrival order;
//! 5. one statement writes every paid order with its line, debit, ledger row, and the stock;
//! 6. one statement stores the 201 bodies and releases the keys of refused orders;
//!
//! then one commit. After it, the goods caches are invalidated once and, if the stock ran
//! out, the sold-out gate is closed so later orders never reach PostgreSQL — with the
//! goods' buyers, read in the transaction when it finds the stock at 0 (one more statement,
//! only then), so a buyer's keyed retry passes the gate to its replay even if it never heard
//! of this batch's commit ([`soldout`]).

use std::collections::HashMap;

use axum::{
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::Value;
use sqlx::PgConnection;

use super::{
    flash::{self, Ask, Verdict},
    service, soldout,
    store::{self, OrderLine, OrderView, PaidOrder},
};
use crate::{
    auth::UserId,
    error::{ApiError, ApiResult},
    goods::GoodsId,
    idempotency::{self, Claimed, IdempotencyKey, Request},
    platform::{
        group_commit::{Applied, Batch},
        money::Money,
    },
    queue::{self, PassCheck},
    state::AppState,
    wallet,
};

/// The [`Batch`] of flash-sale orders, keyed by the goods item.
pub struct FlashSale;

pub struct OrderJob {
    pub user: UserId,
    pub quantity: i32,
    pub key: Option<IdempotencyKey>,
    pub fingerprint: Vec<u8>,
    /// Checked before queueing: Redis stays out of the transaction.
    pub pass: PassCheck,
    /// The sold-out gate as this order saw it, to set the flag without racing a restock.
    pub seen: soldout::Seen,
}

/// What a committed batch leaves to do.
#[derive(Default)]
pub struct StockChange {
    sold: bool,
    /// The stock is at 0: the gate as the latest order saw it, and every buyer of the goods.
    sold_out: Option<(soldout::Seen, Vec<UserId>)>,
}

impl Batch for FlashSale {
    type Key = GoodsId;
    type Job = OrderJob;
    type Reply = Response;
    /// A user's wallet is debited once per statement: a second order of the same user waits
    /// for the next batch.
    type Exclusive = UserId;
    type Committed = StockChange;

    const NAME: &'static str = "orders";

    fn exclusive(job: &OrderJob) -> Option<UserId> {
        Some(job.user)
    }

    async fn apply(
        &self,
        state: &AppState,
        conn: &mut PgConnection,
        goods: &GoodsId,
        jobs: &[OrderJob],
    ) -> ApiResult<Applied<Response, StockChange>> {
        let requests: Vec<Request<'_>> = jobs
            .iter()
            .map(|j| Request {
                user: j.user,
                key: j.key.as_ref(),
                fingerprint: &j.fingerprint,
            })
            .collect();
        let claims = idempotency::claim_many(state, conn, &requests).await?;
        let live: Vec<&OrderJob> = jobs
            .iter()
            .zip(&claims)
            .filter(|(_, c)| matches!(c, Claimed::Run))
            .map(|(j, _)| j)
            .collect();
        let (decided, change) = if live.is_empty() {
            (Vec::new(), StockChange::default())
        } else {
            place(conn, *goods, &live).await?
        };
        let mut decided = decided.into_iter();
        let outcomes = claims
            .iter()
            .map(|c| match c {
                Claimed::Run => decided.next(),
                Claimed::Done(_) => None,
            })
            .collect();
        let replies = idempotency::finish_many(conn, &requests, claims, outcomes).await?;
        Ok(Applied {
            replies,
            committed: change,
        })
    }

    async fn committed(&self, state: &AppState, goods: &GoodsId, change: StockChange) {
        if change.sold {
            service::after_stock_change(state, &[*goods]).await;
        }
        if let Some((seen, buyers)) = change.sold_out {
            soldout::mark(state, &seen, *goods, &buyers).await;
        }
    }
}

type Outcome = ApiResult<(StatusCode, Value)>;

/// Locks, plans and writes the orders that still need running; one outcome per order.
async fn place(
    conn: &mut PgConnection,
    goods: GoodsId,
    live: &[&OrderJob],
) -> ApiResult<(Vec<Outcome>, StockChange)> {
    let users: Vec<UserId> = live.iter().map(|j| j.user).collect();
    let balances = wallet::store::lock_many(conn, &users).await?;
    let row = store::lock_goods(conn, goods).await?;
    // behind a waiting room: what each admitted session already paid for (read under the
    // wallet locks, so an order of the same user in another transaction is settled by now)
    let queue = row.as_ref().and_then(|g| g.queue_id.clone());
    let sessions = |queue: &str| -> Vec<(UserId, i64)> {
        live.iter()
            .filter_map(|j| match &j.pass {
                PassCheck::Admitted {
                    queue: q,
                    session_expires_ms,
                } if q == queue => Some((j.user, *session_expires_ms)),
                _ => None,
            })
            .collect()
    };
    let pass_orders = match &queue {
        Some(q) if !sessions(q).is_empty() => store::pass_orders(conn, q, &sessions(q)).await?,
        _ => HashMap::new(),
    };
    let asks: Vec<Ask<'_>> = live
        .iter()
        .map(|j| Ask {
            user: j.user,
            quantity: j.quantity,
            pass: &j.pass,
            pass_order: pass_orders.get(&j.user).copied(),
        })
        .collect();
    let plan = flash::plan(goods, row.as_ref(), chrono::Utc::now(), &balances, &asks);
    let paid: Vec<PaidOrder> = live
        .iter()
        .zip(&plan.verdicts)
        .filter_map(|(j, v)| match v {
            Verdict::Paid { total } => Some(PaidOrder {
                user: j.user,
                quantity: j.quantity,
                total: *total,
            }),
            Verdict::Refused(_) => None,
        })
        .collect();
    let mut written: HashMap<UserId, OrderView> = match (&row, paid.is_empty()) {
        (Some(g), false) => {
            let w = store::insert_paid(conn, goods, g.price, &paid).await?;
            if w.stock_left != plan.stock_left {
                return Err(ApiError::internal("batch stock differs from its plan"));
            }
            w.orders.into_iter().collect()
        }
        _ => HashMap::new(),
    };
    if let Some(q) = &queue {
        // the sessions that paid now (a refused order leaves its pass as it was)
        let uses: Vec<(UserId, i64, i64)> = sessions(q)
            .into_iter()
            .filter_map(|(u, s)| written.get(&u).map(|o| (u, s, o.id)))
            .collect();
        if !uses.is_empty() && store::record_pass_orders(conn, q, &uses).await? != uses.len() as u64
        {
            // only when the same session paid in a transaction that took no wallet lock
            // (free goods): roll back; the retry is refused or replays
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "write-conflict",
                "a concurrent order used the same waiting-room pass; retry",
            )
            .retry_after(1));
        }
    }
    let price = row.as_ref().map_or(Money::ZERO, |g| g.price);
    let mut outcomes = Vec::with_capacity(live.len());
    for (job, verdict) in live.iter().zip(plan.verdicts) {
        outcomes.push(match verdict {
            Verdict::Refused(e) => Err(e),
            Verdict::Paid { .. } => {
                let mut order = written
                    .remove(&job.user)
                    .ok_or_else(|| ApiError::internal("a paid order was not written"))?;
                order.lines = vec![OrderLine {
                    goods_id: goods,
                    quantity: job.quantity,
                    unit_price: price,
                }];
                serde_json::to_value(&order)
                    .map(|v| (StatusCode::CREATED, v))
                    .map_err(ApiError::internal)
            }
        });
    }
    // any order's view of the gate predates this transaction; the latest is the freshest
    let sold_out = match (&row, live.last()) {
        (Some(_), Some(last)) if plan.stock_left == 0 => {
            Some((last.seen.clone(), soldout::buyers(conn, goods).await?))
        }
        _ => None,
    };
    let change = StockChange {
        sold: plan.sold > 0,
        sold_out,
    };
    Ok((outcomes, change))
}

/// Places a flash-sale order through the goods item's group commit. The sold-out gate was
/// checked by the caller (`seen`); the waiting-room pass is checked here, before queueing.
#[allow(clippy::too_many_arguments)]
pub async fn place_one(
    state: &AppState,
    headers: &HeaderMap,
    user: UserId,
    goods: GoodsId,
    quantity: i32,
    key: Option<IdempotencyKey>,
    fingerprint: Vec<u8>,
    seen: soldout::Seen,
) -> ApiResult<Response> {
    let job = OrderJob {
        user,
        quantity,
        key,
        fingerprint,
        pass: queue::check_pass_ahead(state, headers, user).await,
        seen,
    };
    state.order_batches.submit(state, goods, job).await
}
