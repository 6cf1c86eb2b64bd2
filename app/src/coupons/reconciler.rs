//! Releases coupon grants whose writer died.
//!
//! A grant Redis accepts is pending (`<campaign>:pending`) until its group-commit batch has
//! settled it. If the app process died in between (crash, SIGKILL), the grant stays pending
//! and holds a place in Redis's count that PostgreSQL never filled. Every replica looks, every
//! [`EVERY`], for grants pending longer than [`STALE`] (far beyond any batch's deadline) in
//! the live campaigns: users PostgreSQL has as holders simply leave the pending set, the others
//! also leave the holders, so their place can be granted again.
//!
//! Like the other background loops it reads PostgreSQL through the raw pool, not the request
//! guard: a tick never takes a request's bulkhead slot or counts in the breaker, and a stalled
//! database only delays it. Its Redis calls go through the Redis breaker (a round is skipped
//! while it is open).

use std::{collections::HashSet, time::Duration};

use chrono::Utc;
use tokio::sync::watch;

use super::{keys::CampaignKeys, store};
use crate::{error::ApiResult, platform::ids::CampaignId, state::AppState};

const EVERY: Duration = Duration::from_secs(5);
/// Longer than any batch can run (its PostgreSQL deadline) plus its settling.
pub const STALE: Duration = Duration::from_secs(30);
const SCAN: usize = 1_000;

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let live = match state
            .db
            .unguarded(async |c| store::live_campaigns(c).await)
            .await
        {
            Ok(live) => live,
            Err(e) => {
                tracing::debug!(error = %e, "could not list live coupon campaigns");
                continue;
            }
        };
        for c in live {
            if let Err(e) = release_stale(&state, c.id, STALE).await {
                tracing::debug!(error = %e, campaign = c.id.0, "coupon reconcile failed");
            }
        }
    }
}

/// Settles the grants of `campaign` pending for longer than `stale`; returns how many were
/// released (not in PostgreSQL).
pub async fn release_stale(
    state: &AppState,
    campaign: CampaignId,
    stale: Duration,
) -> ApiResult<usize> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    let cutoff = Utc::now().timestamp_millis() - stale.as_millis() as i64;
    let pending: Vec<i64> = state
        .redis
        .run(async |c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&keys.pending)
                .arg("-inf")
                .arg(cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(SCAN)
                .query_async(c)
                .await
        })
        .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let held: HashSet<i64> = state
        .db
        .unguarded(async |c| store::holders_among(c, campaign, &pending).await)
        .await?
        .into_iter()
        .collect();
    let orphans: Vec<i64> = pending
        .iter()
        .copied()
        .filter(|u| !held.contains(u))
        .collect();
    state
        .redis
        .run(async |c| {
            let mut pipe = redis::pipe();
            pipe.atomic().zrem(&keys.pending, &pending).ignore();
            if !orphans.is_empty() {
                pipe.srem(&keys.holders, &orphans).ignore();
            }
            pipe.query_async::<()>(c).await
        })
        .await?;
    if !orphans.is_empty() {
        tracing::warn!(
            campaign = campaign.0,
            released = orphans.len(),
            "released coupon grants accepted by redis and never written (their writer died)"
        );
    }
    Ok(orphans.len())
}
