//! Charges of one wallet, group-committed: every concurrent charge of a user shares one
//! transaction with a constant number of statements — the idempotency claims, the wallet
//! locked once, one balance update with one multi-row ledger insert (each row carrying its
//! running `balance_after`), the stored responses — and one commit.

use axum::{http::StatusCode, response::Response};
use serde_json::Value;
use sqlx::PgConnection;

use super::{ChargeResponse, LedgerKind, balance_limit, rules, store};
use crate::{
    auth::UserId,
    error::{ApiError, ApiResult},
    idempotency::{self, Claimed, IdempotencyKey, Request},
    platform::{
        group_commit::{Applied, Batch},
        money::Money,
    },
    state::AppState,
};

/// The [`Batch`] of charges, keyed by the wallet's user.
pub struct Charges;

pub struct ChargeJob {
    /// Positive, already checked against the largest single charge.
    pub amount: Money,
    pub key: Option<IdempotencyKey>,
    pub fingerprint: Vec<u8>,
}

impl Batch for Charges {
    type Ctx = AppState;
    type Key = UserId;
    type Job = ChargeJob;
    type Reply = Response;
    /// One statement claims each key once: a repeated key waits for the next batch, where
    /// it finds the first one's stored response.
    type Exclusive = String;
    type Committed = ();

    const NAME: &'static str = "charges";

    fn exclusive(job: &ChargeJob) -> Option<String> {
        job.key.as_ref().map(|k| k.as_str().to_owned())
    }

    async fn apply(
        &self,
        state: &AppState,
        conn: &mut PgConnection,
        user: &UserId,
        jobs: &[ChargeJob],
    ) -> ApiResult<Applied<Response, ()>> {
        let requests: Vec<Request<'_>> = jobs
            .iter()
            .map(|j| Request {
                user: *user,
                key: j.key.as_ref(),
                fingerprint: &j.fingerprint,
            })
            .collect();
        let claims = idempotency::claim_many(state, conn, &requests).await?;
        let live: Vec<usize> = (0..jobs.len())
            .filter(|&i| matches!(claims[i], Claimed::Run))
            .collect();
        let mut outcomes: Vec<Option<ApiResult<(StatusCode, Value)>>> =
            jobs.iter().map(|_| None).collect();
        if !live.is_empty() {
            let balance = store::lock_one(conn, *user).await?;
            let amounts: Vec<Money> = live.iter().map(|&i| jobs[i].amount).collect();
            let after = rules::apply_charges(balance, &amounts);
            let entries: Vec<(Money, Money)> = amounts
                .iter()
                .zip(&after)
                .filter_map(|(a, b)| b.map(|b| (*a, b)))
                .collect();
            let mut written = Vec::new();
            if let Some(&(_, last)) = entries.last() {
                written =
                    store::credit_many(conn, *user, last, &entries, LedgerKind::Charge).await?;
                if written.len() != entries.len() {
                    return Err(ApiError::internal(format!(
                        "wrote {} of {} ledger rows",
                        written.len(),
                        entries.len()
                    )));
                }
            }
            let mut written = written.into_iter();
            for (&i, b) in live.iter().zip(&after) {
                outcomes[i] = Some(match b {
                    // rows come back in insertion order; checked, as a mix-up must roll back
                    Some(expected) => {
                        let entry = written
                            .next()
                            .filter(|e| e.balance_after == *expected)
                            .ok_or_else(|| ApiError::internal("ledger rows out of order"))?;
                        let body = ChargeResponse {
                            balance: entry.balance_after,
                            transaction: entry,
                        };
                        serde_json::to_value(body)
                            .map(|v| (StatusCode::CREATED, v))
                            .map_err(ApiError::internal)
                    }
                    None => Err(balance_limit()),
                });
            }
        }
        let replies = idempotency::finish_many(conn, &requests, claims, outcomes).await?;
        Ok(Applied {
            replies,
            committed: (),
        })
    }

    async fn committed(&self, _: &AppState, _: &UserId, (): ()) {}
}

/// Charges `amount` to `user`'s wallet through the wallet's group commit.
pub async fn charge(
    state: &AppState,
    user: UserId,
    amount: Money,
    key: Option<IdempotencyKey>,
    fingerprint: Vec<u8>,
) -> ApiResult<Response> {
    let job = ChargeJob {
        amount,
        key,
        fingerprint,
    };
    state.charge_batches.submit(state, user, job).await
}
