//! Issuing and (re)loading campaigns in Redis; every Redis call here goes through the Redis
//! breaker.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::Script;

use super::{batch, issue_code::IssueCode, keys::CampaignKeys, rules::Grant, store};
use crate::{
    auth::UserId,
    error::{ApiError, ApiResult},
    platform::{ids::CampaignId, metrics::OutcomeLabels},
    state::AppState,
};

static ISSUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("issue.lua")));
static LOAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("load.lua")));
static SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("settle.lua")));

#[derive(Debug, PartialEq, Eq)]
pub enum Issue {
    Issued,
    AlreadyHolds,
    NotStarted,
    Ended,
    SoldOut,
}

/// How long the campaign's Redis keys live: until a day after it ends.
fn ttl_ms(ends_at: DateTime<Utc>) -> i64 {
    ((ends_at - Utc::now()).num_milliseconds() + 86_400_000).max(60_000)
}

/// Decides an issue attempt: Redis answers rejections alone; a grant it accepts is answered
/// [`Issue::Issued`] only once it is committed to PostgreSQL ([`batch::grant`]).
pub async fn issue(
    state: &AppState,
    campaign: CampaignId,
    user: UserId,
) -> Result<Issue, ApiError> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    for attempt in 0..2 {
        // under the Redis breaker: while Redis is out, issue answers 503 + Retry-After at once;
        // batched with the concurrent attempts (each script still runs atomically)
        let now_ms = Utc::now().timestamp_millis();
        let reply: Vec<redis::Value> = state
            .redis
            .batched(async |batch| {
                batch
                    .eval(&ISSUE, |cmd| {
                        cmd.arg(3)
                            .arg(&keys.meta)
                            .arg(&keys.holders)
                            .arg(&keys.pending)
                            .arg(user.0)
                            .arg(now_ms);
                    })
                    .await
            })
            .await?;
        match IssueCode::from_reply(&reply)? {
            IssueCode::Accepted => {
                return Ok(match batch::grant(state, campaign, user.0).await? {
                    Grant::Issued => Issue::Issued,
                    Grant::AlreadyHolds => Issue::AlreadyHolds,
                    Grant::SoldOut => Issue::SoldOut,
                });
            }
            IssueCode::AlreadyHolds => return Ok(Issue::AlreadyHolds),
            IssueCode::NotStarted => return Ok(Issue::NotStarted),
            IssueCode::Ended => return Ok(Issue::Ended),
            IssueCode::SoldOut => return Ok(Issue::SoldOut),
            IssueCode::NotLoaded if attempt == 0 => {
                // not loaded: a new campaign Redis has not seen, Redis lost its data, or an id
                // that does not exist (remembered briefly, answered without a lookup)
                if !load(state, campaign).await? {
                    return Err(ApiError::not_found("coupon campaign"));
                }
            }
            IssueCode::NotLoaded => break,
        }
    }
    Err(ApiError::unavailable(
        "the coupon campaign is being reloaded; retry shortly",
    ))
}

/// Loads a campaign into Redis from PostgreSQL, unless it is loaded already. Returns false if
/// the campaign does not exist.
///
/// Ids PostgreSQL did not know a moment ago answer false at once, without a lock or a lookup;
/// reloads of different campaigns run side by side (`coupons::directory`).
pub async fn load(state: &AppState, campaign: CampaignId) -> Result<bool, ApiError> {
    let directory = &state.coupon_campaigns;
    if directory.is_unknown(campaign) {
        return Ok(false);
    }
    let _reloading = directory.reload_lock(campaign).await;
    if directory.is_unknown(campaign) {
        // found unknown by the reload we waited for
        return Ok(false);
    }
    let keys = CampaignKeys::new(&state.redis, campaign);
    let loaded: bool = state
        .redis
        .run(async |c| redis::cmd("EXISTS").arg(&keys.meta).query_async(c).await)
        .await?;
    if loaded {
        return Ok(true);
    }
    let found = {
        let _slot = directory.lookup_slot(campaign).await?;
        state
            .db
            .run(async |conn| {
                let Some(c) = store::campaign(&mut *conn, campaign).await? else {
                    return Ok(None);
                };
                let holders = store::holders(conn, campaign).await?;
                Ok::<_, sqlx::Error>(Some((c, holders)))
            })
            .await?
    };
    state
        .metrics
        .coupon_campaign_lookups
        .get_or_create(&OutcomeLabels {
            outcome: if found.is_some() { "found" } else { "unknown" },
        })
        .inc();
    let Some((c, holders)) = found else {
        directory.remember_unknown(campaign);
        return Ok(false);
    };
    directory.remember_known(campaign);
    let mut script = LOAD.key(&keys.meta);
    script
        .key(&keys.holders)
        .key(&keys.pending)
        .arg(c.total_quantity)
        .arg(c.starts_at.timestamp_millis())
        .arg(c.ends_at.timestamp_millis())
        .arg(ttl_ms(c.ends_at));
    for h in &holders {
        script.arg(*h);
    }
    let fresh: i64 = state
        .redis
        .run(async |conn| script.invoke_async(conn).await)
        .await?;
    if fresh == 1 {
        tracing::info!(
            campaign = campaign.0,
            holders = holders.len(),
            "coupon campaign loaded into redis"
        );
    }
    Ok(true)
}

/// Forces a reload (admin, after a Redis incident): drops the counters, then loads them.
pub async fn rebuild(state: &AppState, campaign: CampaignId) -> Result<bool, ApiError> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    state
        .redis
        .run(async |c| redis::cmd("DEL").arg(&keys.meta).query_async::<()>(c).await)
        .await?;
    // an admin asks for this id: look it up even if it was unknown a moment ago
    state.coupon_campaigns.forget_unknown(campaign);
    load(state, campaign).await
}

/// Settles a committed grant batch in Redis: its users leave the pending set, users refused
/// as sold out leave the holders, and when PostgreSQL refused anything (`resync`), PostgreSQL's
/// holders are added back to Redis's set, so its count is right again.
pub async fn settle(
    state: &AppState,
    campaign: CampaignId,
    users: &[i64],
    sold_out: &[i64],
    resync: bool,
) -> ApiResult<()> {
    let holders = if resync {
        state
            .db
            .run(async |conn| store::holders(conn, campaign).await)
            .await?
    } else {
        Vec::new()
    };
    let keys = CampaignKeys::new(&state.redis, campaign);
    let mut script = SETTLE.key(&keys.meta);
    script
        .key(&keys.holders)
        .key(&keys.pending)
        .arg(users.len())
        .arg(sold_out.len())
        .arg(u8::from(resync))
        .arg(users)
        .arg(sold_out)
        .arg(&holders);
    state
        .redis
        .run(async |conn| script.invoke_async::<i64>(conn).await)
        .await?;
    Ok(())
}

/// Gives back the slot of a grant Redis accepted but PostgreSQL did not write (its batch
/// failed): the user is no holder and no longer pending.
pub async fn release(state: &AppState, campaign: CampaignId, user: i64) -> ApiResult<()> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    state
        .redis
        .run(async |c| {
            redis::pipe()
                .atomic()
                .srem(&keys.holders, user)
                .ignore()
                .zrem(&keys.pending, user)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
}

/// Holders according to Redis (issued so far, including grants being written), for the
/// campaign view.
pub async fn issued_count(state: &AppState, campaign: CampaignId) -> Result<i64, ApiError> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    state
        .redis
        .run(async |c| redis::cmd("SCARD").arg(&keys.holders).query_async(c).await)
        .await
}
