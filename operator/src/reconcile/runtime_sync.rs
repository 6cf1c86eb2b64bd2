//! Act on the runtime document: list every QueueConfig and Campaign, merge (pure, in
//! [`crate::merge`]), compare-and-set it into Redis, and count the app replicas running it.
//! Every reconcile of either kind calls this, so the document converges whichever changed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignSpec, QueueConfig};

use super::{Context, Error, Platform, key_of};
use crate::{
    merge::{CampaignSource, QueueSource, merge},
    phase::phase_at,
    store::runtime_doc::{self, DocError, Published},
};

/// Set of QueueConfigs retired by deleted campaigns, below the prefix.
pub const RETIRED_KEY: &str = "operator:retired-queues";

/// A QueueConfig's identity for retirement: its uid, so a re-created one starts fresh.
fn retire_id(q: &QueueConfig) -> String {
    q.metadata.uid.clone().unwrap_or_else(|| key_of(q))
}

async fn retired_set<P: Platform>(ctx: &Context<P>) -> Result<HashSet<String>, DocError> {
    let mut conn = ctx.redis.conn.clone();
    Ok(redis::cmd("SMEMBERS")
        .arg(ctx.redis.key(RETIRED_KEY))
        .query_async(&mut conn)
        .await?)
}

/// Retires the QueueConfigs a deleted campaign names that no other live campaign names.
pub async fn retire_queues_of<P: Platform>(
    ctx: &Context<P>,
    campaign: &Campaign,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let ns = campaign.metadata.namespace.as_deref().unwrap_or("default");
    let others = ctx.platform.campaigns().await.map_err(Error::List)?;
    let queues = ctx.platform.queue_configs().await.map_err(Error::List)?;
    let mut ids = Vec::new();
    for q in queues
        .iter()
        .filter(|q| q.metadata.namespace.as_deref().unwrap_or("default") == ns)
    {
        let name = q.metadata.name.as_deref().unwrap_or("");
        let still_claimed = others.iter().any(|o| {
            key_of(o) != key_of(campaign)
                && o.metadata.deletion_timestamp.is_none()
                && o.metadata.namespace.as_deref().unwrap_or("default") == ns
                && o.spec.queues.iter().any(|n| n == name)
                && phase_at(&o.spec.schedule, now) != floodgate_crds::v1alpha1::Phase::Ended
        });
        if campaign.spec.queues.iter().any(|n| n == name) && !still_claimed {
            ids.push(retire_id(q));
        }
    }
    if !ids.is_empty() {
        let mut conn = ctx.redis.conn.clone();
        redis::cmd("SADD")
            .arg(ctx.redis.key(RETIRED_KEY))
            .arg(ids)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| Error::Unpublish(DocError::Redis(e)))?;
    }
    Ok(())
}

pub struct Synced {
    pub published: Published,
    pub applied_by: u32,
    /// Queue ids in the published document.
    pub queue_ids: Vec<String>,
    pub duplicates: Vec<crate::merge::Duplicate>,
}

/// `Err` only for listing failures (a reconcile error); Redis failures come back inside `Ok`
/// so the caller can report them as a condition and keep going.
pub async fn sync<P: Platform>(
    ctx: &Context<P>,
    now: DateTime<Utc>,
    deleting: Option<&str>,
) -> Result<Result<Synced, DocError>, Error> {
    let campaigns = ctx.platform.campaigns().await.map_err(Error::List)?;
    // A QueueConfig being deleted leaves the document now, not when its object is gone.
    let mut queues = ctx.platform.queue_configs().await.map_err(Error::List)?;
    queues.retain(|q| q.metadata.deletion_timestamp.is_none());
    // Campaigns name QueueConfigs of their own namespace; names are namespaced, so the merge
    // sees `namespace/name` on both sides.
    let queue_names: Vec<_> = queues.iter().map(key_of).collect();
    let retired = match retired_set(ctx).await {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let queue_sources: Vec<_> = queues
        .iter()
        .zip(&queue_names)
        .map(|(q, name)| QueueSource {
            name,
            spec: &q.spec,
            retired: retired.contains(&retire_id(q)),
        })
        .collect();
    let qualified: Vec<_> = campaigns.iter().map(qualified_spec).collect();
    let campaign_sources: Vec<_> = campaigns
        .iter()
        .zip(&qualified)
        .map(|(c, spec)| campaign_source(c, spec, now, deleting))
        .collect();
    let merged = merge(&queue_sources, &campaign_sources);
    let queue_ids = merged.config.queues.keys().cloned().collect();

    Ok(async {
        let published = runtime_doc::publish(&ctx.redis, &merged.config).await?;
        let applied_by = runtime_doc::applied_by(&ctx.redis, published.version).await?;
        Ok(Synced {
            published,
            applied_by,
            queue_ids,
            duplicates: merged.duplicates,
        })
    }
    .await)
}

/// The campaign's spec with its queues as `namespace/name` (Campaigns name QueueConfigs of
/// their own namespace).
fn qualified_spec(c: &Campaign) -> CampaignSpec {
    let ns = c.metadata.namespace.as_deref().unwrap_or("default");
    let mut spec = c.spec.clone();
    spec.queues = spec.queues.iter().map(|q| format!("{ns}/{q}")).collect();
    spec
}

/// What the merge needs of a campaign: `spec` is its [`qualified_spec`].
fn campaign_source<'a>(
    c: &'a Campaign,
    spec: &'a CampaignSpec,
    now: DateTime<Utc>,
    deleting: Option<&str>,
) -> CampaignSource<'a> {
    CampaignSource {
        name: c.metadata.name.as_deref().unwrap_or(""),
        spec,
        started: crate::window::window_at(&c.spec.schedule, now)
            .ok()
            .map(|w| w.starts_at),
        phase: phase_at(&c.spec.schedule, now),
        deleting: c.metadata.deletion_timestamp.is_some() || deleting == Some(key_of(c).as_str()),
    }
}
