//! Persists coupon grants from the campaigns' streams into PostgreSQL.
//!
//! Every replica runs one consumer in the consumer group `persist`, so the work is shared and
//! survives replica crashes: entries a dead consumer left pending are claimed with XAUTOCLAIM
//! after [`CLAIM_IDLE`]. Entries are acknowledged and deleted only after their rows are
//! committed, so the stream holds exactly the grants not yet persisted (what a rebuild must
//! add to PostgreSQL's view). The same loop reloads campaigns Redis has lost and exports the
//! backlog as `floodgate_stream_lag{stream}`.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use tokio::sync::watch;

use super::{
    keys::{CampaignKeys, GROUP},
    service, store,
};
use crate::{platform::metrics::StreamLabels, state::AppState};

const BATCH: usize = 500;
const CLAIM_IDLE: Duration = Duration::from_secs(15);
const REFRESH: Duration = Duration::from_secs(2);

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let consumer = state.settings.replica_id();
    let mut campaigns: Vec<i64> = Vec::new();
    let mut refreshed = Instant::now() - REFRESH;
    let mut claimed = Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if refreshed.elapsed() >= REFRESH {
            refreshed = Instant::now();
            match store::live_campaigns(state.db.pool()).await {
                Ok(live) => campaigns = live.iter().map(|c| c.id).collect(),
                Err(e) => tracing::debug!(error = %e, "could not list live campaigns"),
            }
            for &c in &campaigns {
                maintain(&state, c).await;
            }
        }
        let claim = claimed.elapsed() >= CLAIM_IDLE;
        if claim {
            claimed = Instant::now();
        }
        let mut moved = 0;
        for &c in &campaigns {
            match drain(&state, c, &consumer, claim).await {
                Ok(n) => moved += n,
                Err(e) => tracing::debug!(error = %e, campaign = c, "coupon stream drain failed"),
            }
        }
        if moved == 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Reloads a campaign Redis lost, makes sure the group exists, exports the backlog.
async fn maintain(state: &AppState, campaign: i64) {
    if let Err(e) = service::load(state, campaign).await {
        tracing::debug!(error = %e, campaign, "coupon campaign reload failed");
        return;
    }
    let keys = CampaignKeys::new(&state.redis, campaign);
    let mut conn = state.redis.conn();
    let created: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        tracing::debug!(error = %e, campaign, "could not create the coupon consumer group");
    }
    if let Ok(len) = redis::cmd("XLEN")
        .arg(&keys.stream)
        .query_async::<i64>(&mut conn)
        .await
    {
        state
            .metrics
            .stream_lag
            .get_or_create(&StreamLabels {
                stream: format!("coupons:{campaign}"),
            })
            .set(len);
    }
}

/// Persists one batch of new entries (and, when `claim`, entries stuck with dead consumers).
async fn drain(
    state: &AppState,
    campaign: i64,
    consumer: &str,
    claim: bool,
) -> anyhow::Result<usize> {
    let keys = CampaignKeys::new(&state.redis, campaign);
    let mut conn = state.redis.conn();
    let mut entries: Vec<StreamId> = Vec::new();
    if claim {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&keys.stream)
            .arg(GROUP)
            .arg(consumer)
            .arg(CLAIM_IDLE.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await?;
        entries.extend(reply.claimed);
    }
    let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(consumer)
        .arg("COUNT")
        .arg(BATCH)
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(">")
        .query_async(&mut conn)
        .await?;
    entries.extend(read.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids));
    if entries.is_empty() {
        return Ok(0);
    }
    let mut users = Vec::with_capacity(entries.len());
    let mut times: Vec<DateTime<Utc>> = Vec::with_capacity(entries.len());
    for e in &entries {
        let (Some(u), Some(t)) = (e.get::<i64>("u"), e.get::<i64>("t")) else {
            tracing::warn!(id = e.id, campaign, "malformed coupon grant skipped");
            continue;
        };
        users.push(u);
        times.push(
            Utc.timestamp_millis_opt(t)
                .single()
                .unwrap_or_else(Utc::now),
        );
    }
    let mut tx = state.db.pool().begin().await?;
    let inserted = store::persist_grants(&mut tx, campaign, &users, &times).await?;
    tx.commit().await?;
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let _: () = redis::pipe()
        .cmd("XACK")
        .arg(&keys.stream)
        .arg(GROUP)
        .arg(&ids)
        .ignore()
        .cmd("XDEL")
        .arg(&keys.stream)
        .arg(&ids)
        .ignore()
        .query_async(&mut conn)
        .await?;
    if (inserted as usize) < users.len() {
        tracing::debug!(
            campaign,
            inserted,
            delivered = users.len(),
            "some grants were already persisted"
        );
    }
    Ok(entries.len())
}
