//! Coupon grants, group-committed per campaign: a grant Redis accepted is written to
//! PostgreSQL before the caller hears 201, and the concurrent grants of one campaign share
//! one transaction (`platform::group_commit`).
//!
//! A batch runs a constant number of statements, whatever its size:
//! 1. the campaign row locked (`for update`), giving the room left;
//! 2. the batch's users who already hold a coupon;
//! 3. the pure plan ([`super::rules`]) decides each grant in arrival order;
//! 4. one statement writes the granted coupons and counts them on the campaign row;
//!
//! then one commit. After it, the batch's users leave Redis's pending set, and if PostgreSQL
//! refused a grant Redis accepted (Redis counted too few holders after a loss), the refusal
//! is logged at warn, counted in `floodgate_coupon_grants_refused_total{reason}`, and Redis's
//! holders are resynced from PostgreSQL before anyone is answered.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{
    rules::{self, Grant},
    service, store,
};
use crate::{
    error::{ApiError, ApiResult},
    platform::ids::CampaignId,
    platform::{
        group_commit::{Applied, Batch},
        metrics::ReasonLabels,
    },
    state::AppState,
};

/// The [`Batch`] of coupon grants, keyed by the campaign.
pub struct Grants;

pub struct GrantJob {
    pub user: i64,
    pub at: DateTime<Utc>,
}

/// What a committed batch leaves to do in Redis.
pub struct Settled {
    /// Every user of the batch (they leave the pending set).
    users: Vec<i64>,
    /// Grants Redis accepted and PostgreSQL refused as sold out (they leave the holders).
    sold_out: Vec<i64>,
    /// Grants refused because the user already held a coupon Redis had forgotten.
    already: usize,
}

impl Batch for Grants {
    type Ctx = AppState;
    type Key = CampaignId;
    type Job = GrantJob;
    type Reply = Grant;
    /// One verdict per user and statement.
    type Exclusive = i64;
    type Committed = Settled;

    const NAME: &'static str = "coupons";

    fn exclusive(job: &GrantJob) -> Option<i64> {
        Some(job.user)
    }

    async fn apply(
        &self,
        _state: &AppState,
        conn: &mut PgConnection,
        campaign: &CampaignId,
        jobs: &[GrantJob],
    ) -> ApiResult<Applied<Grant, Settled>> {
        let users: Vec<i64> = jobs.iter().map(|j| j.user).collect();
        let room = store::lock_room(conn, *campaign)
            .await?
            .ok_or_else(|| ApiError::not_found("coupon campaign"))?;
        let holders: HashSet<i64> = store::holders_among(conn, *campaign, &users)
            .await?
            .into_iter()
            .collect();
        let verdicts = rules::plan(room, &holders, &users);
        let (granted, at): (Vec<i64>, Vec<DateTime<Utc>>) = jobs
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == Grant::Issued)
            .map(|(j, _)| (j.user, j.at))
            .unzip();
        if !granted.is_empty() {
            let inserted = store::insert_grants(conn, *campaign, &granted, &at).await?;
            if inserted != granted.len() as i64 {
                // rolls the batch back: its plan no longer matches the table
                return Err(ApiError::internal(format!(
                    "coupon batch wrote {inserted} of {} planned grants",
                    granted.len()
                )));
            }
        }
        let sold_out = users
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == Grant::SoldOut)
            .map(|(u, _)| *u)
            .collect();
        let already = verdicts
            .iter()
            .filter(|v| **v == Grant::AlreadyHolds)
            .count();
        Ok(Applied {
            replies: verdicts.into_iter().map(Ok).collect(),
            committed: Settled {
                users,
                sold_out,
                already,
            },
        })
    }

    async fn committed(&self, state: &AppState, campaign: &CampaignId, done: Settled) {
        let refused = done.sold_out.len() + done.already;
        if refused > 0 {
            for (reason, n) in [
                ("sold-out", done.sold_out.len()),
                ("already-issued", done.already),
            ] {
                if n > 0 {
                    state
                        .metrics
                        .coupon_grants_refused
                        .get_or_create(&ReasonLabels { reason })
                        .inc_by(n as u64);
                }
            }
            tracing::warn!(
                campaign = campaign.0,
                sold_out = done.sold_out.len(),
                already_issued = done.already,
                "postgresql refused coupon grants redis accepted (redis lost holders); resyncing redis from postgresql"
            );
        }
        if let Err(e) =
            service::settle(state, *campaign, &done.users, &done.sold_out, refused > 0).await
        {
            tracing::warn!(error = %e, campaign = campaign.0, "could not settle coupon grants in redis; the reconciler will");
        }
    }
}

/// Writes one grant Redis accepted through the campaign's group commit; answers once it is
/// committed (or refused). Runs in its own task: a caller that goes away cannot leave a grant
/// half-settled (accepted in Redis, never written nor released).
pub async fn grant(state: &AppState, campaign: CampaignId, user: i64) -> ApiResult<Grant> {
    let state = state.clone();
    let job = GrantJob {
        user,
        at: Utc::now(),
    };
    tokio::spawn(async move {
        let answer = state.coupon_grants.submit(&state, campaign, job).await;
        if answer.is_err() {
            // not written (or, after a commit timeout, perhaps written): give the slot back;
            // if it was written, PostgreSQL refuses the next grant past the cap and Redis is
            // resynced then
            if let Err(e) = service::release(&state, campaign, user).await {
                tracing::warn!(error = %e, campaign = campaign.0, user, "could not release a failed coupon grant; the reconciler will");
            }
        }
        answer
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(e)))
}
