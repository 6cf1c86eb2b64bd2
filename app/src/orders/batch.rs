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
//! 5. one statement writes every paid order with its line, and the stock; one more (the
//!    wallet's) every debit with its ledger row;
//! 6. one statement stores the 201 bodies and releases the keys of refused orders;
//!
//! then one commit. After it, the goods caches are invalidated once and, if the stock ran
//! out, the sold-out gate is closed so later orders never reach PostgreSQL — with the
//! goods' keyed orders, read in the transaction when it finds the stock at 0 (one more
//! statement, only then), so a buyer's keyed retry passes the gate to its replay even if it
//! never heard of this batch's commit ([`soldout`]).

use std::collections::HashMap;

use axum::{http::StatusCode, response::Response};
use serde_json::Value;
use sqlx::PgConnection;

use super::{
    flash::{self, Ask, Plan, Verdict},
    store::{self, OrderLine, OrderView, PaidOrder},
};
use crate::{
    auth::UserId,
    error::{ApiError, ApiResult},
    goods::{self, GoodsId, StockMove, soldout},
    idempotency::{self, Claimed, IdempotencyKey, Request},
    platform::{
        group_commit::{Applied, Batch},
        ids::OrderId,
        money::Money,
    },
    queue::PassCheck,
    state::AppState,
    wallet::{self, LedgerKind},
};

/// The [`Batch`] of flash-sale orders, keyed by the goods item.
pub struct FlashSale;

pub struct OrderJob {
    pub user: UserId,
    pub quantity: i32,
    pub key: Option<IdempotencyKey>,
    pub fingerprint: Vec<u8>,
    /// Checked before queueing (`queue::check_pass_ahead`): Redis stays out of the transaction.
    pub pass: PassCheck,
    /// The sold-out gate as this order saw it, to set the flag without racing a restock.
    pub seen: soldout::Seen,
}

/// What a committed batch leaves to do.
#[derive(Default)]
pub struct StockChange {
    sold: bool,
    /// The stock is at 0: the gate as the latest order saw it, and every keyed order of the
    /// goods.
    sold_out: Option<(soldout::Seen, Vec<soldout::Member>)>,
}

impl Batch for FlashSale {
    type Ctx = AppState;
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
            goods::stock_changed(state, &[*goods], StockMove::Taken).await;
        }
        if let Some((seen, members)) = change.sold_out {
            soldout::mark(state, &seen, *goods, &members).await;
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
    let queue = row.as_ref().and_then(|g| g.queue_id.clone());
    let sessions = queue
        .as_deref()
        .map_or_else(Vec::new, |q| sessions(live, q));
    // behind a waiting room: what each admitted session already paid for (read under the
    // wallet locks, so an order of the same user in another transaction is settled by now)
    let pass_orders = match &queue {
        Some(q) if !sessions.is_empty() => store::pass_orders(conn, q, &sessions).await?,
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
    let mut written = match &row {
        Some(g) => write_paid(conn, goods, g.price, live, &plan).await?,
        None => HashMap::new(),
    };
    if let Some(q) = &queue {
        record_passes(conn, q, &sessions, &written).await?;
    }
    let (sold, stock_left) = (plan.sold, plan.stock_left);
    let price = row.as_ref().map_or(Money::ZERO, |g| g.price);
    let outcomes = outcomes(goods, price, live, plan.verdicts, &mut written)?;
    // any order's view of the gate predates this transaction; the latest is the freshest
    let sold_out = match (&row, live.last()) {
        (Some(_), Some(last)) if stock_left == 0 => {
            Some((last.seen.clone(), soldout::members(conn, goods).await?))
        }
        _ => None,
    };
    let change = StockChange {
        sold: sold > 0,
        sold_out,
    };
    Ok((outcomes, change))
}

/// The admitted sessions of `queue` among the orders, by user.
fn sessions(live: &[&OrderJob], queue: &str) -> Vec<(UserId, i64)> {
    live.iter()
        .filter_map(|j| match &j.pass {
            PassCheck::Admitted {
                queue: q,
                session_expires_ms,
            } if q == queue => Some((j.user, *session_expires_ms)),
            _ => None,
        })
        .collect()
}

/// Writes the orders the plan paid, then their debits (through the wallet's store); the
/// orders by user.
async fn write_paid(
    conn: &mut PgConnection,
    goods: GoodsId,
    price: Money,
    live: &[&OrderJob],
    plan: &Plan,
) -> ApiResult<HashMap<UserId, OrderView>> {
    let paid: Vec<PaidOrder<'_>> = live
        .iter()
        .zip(&plan.verdicts)
        .filter_map(|(j, v)| match v {
            Verdict::Paid { total } => Some(PaidOrder {
                user: j.user,
                key: j.key.as_ref(),
                quantity: j.quantity,
                total: *total,
            }),
            Verdict::Refused(_) => None,
        })
        .collect();
    if paid.is_empty() {
        return Ok(HashMap::new());
    }
    let w = store::insert_paid(conn, goods, price, &paid).await?;
    if w.stock_left != plan.stock_left {
        return Err(ApiError::internal("batch stock differs from its plan"));
    }
    let debits: Vec<(UserId, Money, OrderId)> = w
        .orders
        .iter()
        .filter(|(_, o)| o.total.is_positive())
        .map(|(u, o)| (*u, o.total, o.id))
        .collect();
    let taken = wallet::store::debit_many(conn, &debits, LedgerKind::OrderPayment).await?;
    if taken != debits.len() as u64 {
        return Err(ApiError::internal(format!(
            "batch of {} orders for goods {} was debited incompletely",
            paid.len(),
            goods.0
        )));
    }
    Ok(w.orders.into_iter().collect())
}

/// Records the sessions of `queue` that paid now (a refused order leaves its pass as it was).
async fn record_passes(
    conn: &mut PgConnection,
    queue: &str,
    sessions: &[(UserId, i64)],
    written: &HashMap<UserId, OrderView>,
) -> ApiResult<()> {
    let uses: Vec<(UserId, i64, OrderId)> = sessions
        .iter()
        .filter_map(|&(u, s)| written.get(&u).map(|o| (u, s, o.id)))
        .collect();
    if !uses.is_empty() && store::record_pass_orders(conn, queue, &uses).await? != uses.len() as u64
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
    Ok(())
}

/// One outcome per order, in order: the refusal, or the 201 body of the order written.
fn outcomes(
    goods: GoodsId,
    price: Money,
    live: &[&OrderJob],
    verdicts: Vec<Verdict>,
    written: &mut HashMap<UserId, OrderView>,
) -> ApiResult<Vec<Outcome>> {
    let mut outcomes = Vec::with_capacity(live.len());
    for (job, verdict) in live.iter().zip(verdicts) {
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
    Ok(outcomes)
}

/// Places a flash-sale order through the goods item's group commit. The caller checked the
/// sold-out gate (`job.seen`) and the waiting-room pass (`job.pass`) before queueing.
pub async fn place_one(state: &AppState, goods: GoodsId, job: OrderJob) -> ApiResult<Response> {
    state.order_batches.submit(state, goods, job).await
}
