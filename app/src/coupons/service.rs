//! Issuing and (re)loading campaigns in Redis.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redis::{Script, streams::StreamRangeReply};

use super::{keys::CampaignKeys, store};
use crate::{auth::UserId, error::ApiError, state::AppState};

static ISSUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("issue.lua")));
static LOAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("load.lua")));
/// One rebuild at a time per process; the script itself makes concurrent rebuilds across
/// replicas harmless.
static REBUILD: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

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

pub async fn issue(state: &AppState, campaign: i64, user: UserId) -> Result<Issue, ApiError> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    for attempt in 0..2 {
        // under the Redis breaker: while Redis is out, issue answers 503 + Retry-After at once;
        // batched with the concurrent attempts (each script still runs atomically)
        let now_ms = Utc::now().timestamp_millis();
        let reply: Vec<redis::Value> = state
            .breakers
            .redis
            .run(async {
                Ok(state
                    .redis
                    .batch()
                    .eval(&ISSUE, |cmd| {
                        cmd.arg(3)
                            .arg(&keys.meta)
                            .arg(&keys.holders)
                            .arg(&keys.stream)
                            .arg(user.0)
                            .arg(now_ms);
                    })
                    .await?)
            })
            .await?;
        let code: i64 = reply
            .first()
            .map(redis::from_redis_value_ref)
            .transpose()
            .map_err(ApiError::internal)?
            .unwrap_or(-1);
        match code {
            1 => return Ok(Issue::Issued),
            0 => return Ok(Issue::AlreadyHolds),
            -2 => return Ok(Issue::NotStarted),
            -3 => return Ok(Issue::Ended),
            -4 => return Ok(Issue::SoldOut),
            _ if attempt == 0 => {
                // not loaded: a new campaign Redis has not seen, or Redis lost its data
                if !load(state, campaign).await? {
                    return Err(ApiError::not_found("coupon campaign"));
                }
            }
            _ => break,
        }
    }
    Err(ApiError::unavailable(
        "the coupon campaign is being reloaded; retry shortly",
    ))
}

/// Loads a campaign into Redis from PostgreSQL plus the stream's unpersisted grants, unless it
/// is loaded already. Returns false if the campaign does not exist.
///
/// The stream is read before PostgreSQL: a consumer deletes an entry only after committing its
/// row, so every grant is in at least one of the two snapshots.
pub async fn load(state: &AppState, campaign: i64) -> Result<bool, ApiError> {
    let _guard = REBUILD.lock().await;
    let keys = CampaignKeys::new(&state.redis, campaign);
    let mut conn = state.redis.conn();
    let loaded: bool = redis::cmd("EXISTS")
        .arg(&keys.meta)
        .query_async(&mut conn)
        .await?;
    if loaded {
        return Ok(true);
    }
    let pending: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    let found = state
        .db
        .run(async |conn| {
            let Some(c) = store::campaign(&mut *conn, campaign).await? else {
                return Ok(None);
            };
            let holders = store::holders(conn, campaign).await?;
            Ok::<_, sqlx::Error>(Some((c, holders)))
        })
        .await?;
    let Some((c, mut holders)) = found else {
        return Ok(false);
    };
    holders.extend(pending.ids.iter().filter_map(|e| e.get::<i64>("u")));
    holders.sort_unstable();
    holders.dedup();
    let mut script = LOAD.key(&keys.meta);
    script
        .key(&keys.holders)
        .key(&keys.stream)
        .arg(c.total_quantity)
        .arg(c.starts_at.timestamp_millis())
        .arg(c.ends_at.timestamp_millis())
        .arg(ttl_ms(c.ends_at));
    for h in &holders {
        script.arg(*h);
    }
    let fresh: i64 = script.invoke_async(&mut conn).await?;
    if fresh == 1 {
        tracing::info!(
            campaign,
            holders = holders.len(),
            pending = pending.ids.len(),
            "coupon campaign loaded into redis"
        );
    }
    Ok(true)
}

/// Forces a reload (admin, after a Redis incident): drops the counters, then loads them.
pub async fn rebuild(state: &AppState, campaign: i64) -> Result<bool, ApiError> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    let mut conn = state.redis.conn();
    let _: () = redis::cmd("DEL")
        .arg(&keys.meta)
        .query_async(&mut conn)
        .await?;
    load(state, campaign).await
}

/// Holders according to Redis (issued so far), for the campaign view.
pub async fn issued_count(state: &AppState, campaign: i64) -> Result<i64, ApiError> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    let mut conn = state.redis.conn();
    state
        .breakers
        .redis
        .run(async {
            Ok(redis::cmd("SCARD")
                .arg(&keys.holders)
                .query_async(&mut conn)
                .await?)
        })
        .await
}

/// Live campaigns in which `user` holds a grant that is not persisted yet.
pub async fn pending_for(
    state: &AppState,
    user: UserId,
    persisted: &[i64],
) -> Result<Vec<store::Campaign>, ApiError> {
    let live = state
        .db
        .run(async |c| store::live_campaigns(c).await)
        .await?;
    let candidates: Vec<store::Campaign> = live
        .into_iter()
        .filter(|c| !persisted.contains(&c.id))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for c in &candidates {
        pipe.sismember(CampaignKeys::new(&state.redis, c.id).holders, user.0);
    }
    let mut conn = state.redis.conn();
    let member: Vec<bool> = state
        .breakers
        .redis
        .run(async { Ok(pipe.query_async(&mut conn).await?) })
        .await?;
    Ok(candidates
        .into_iter()
        .zip(member)
        .filter_map(|(c, m)| m.then_some(c))
        .collect())
}
