//! The QueueConfig pipeline: validate → runtime document → read the queue's gauges → status.

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::QueueConfig;

use super::{
    Context, Error, Next, Note, ObjectKey, Platform,
    prelude::{self, Reconciled},
    runtime_sync::{self, Synced},
    status::{self, Conditions},
};
use crate::observe::{self, depth::WAITING_GAUGE};

/// QueueConfigs have no schedule; their status (waiting, applied-by) is refreshed this often.
pub const QUEUE_RESYNC: Duration = Duration::from_secs(10);

pub async fn apply<P: Platform>(
    q: &QueueConfig,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    let Some((_, mut st)) = prelude::validated(q, ctx, now).await? else {
        return Ok(Next(None));
    };
    let mut conditions = Conditions::of(q, &mut st.conditions, now);
    if let Some(s) = prelude::publish(ctx, &ObjectKey::of(q), &mut conditions, now).await? {
        let (ok, reason, msg) = published(q, &s);
        st.published_version = i64::try_from(s.published.version).ok().filter(|_| ok);
        st.applied_by_replicas = i32::try_from(s.applied_by).ok().filter(|_| ok);
        conditions.set(status::CONFIG_PUBLISHED, ok, reason, msg);
    }
    conditions.set(status::READY, true, "Valid", "");

    // The queue's live numbers, when an app serving it can be scraped.
    let urls = ctx.platform.queue_scrape_urls(q).await.unwrap_or_default();
    if let Ok(scrape) = observe::scrape(&ctx.http, &urls).await {
        let gauge = |name| scrape.queue_gauge(name, &q.spec.queue_id).map(|v| v as i64);
        st.waiting = gauge(WAITING_GAUGE);
        st.active = gauge("floodgate_queue_active");
        st.admitted_total = gauge("floodgate_queue_admitted_total");
    }
    q.save(ctx, &st, now).await?;
    Ok(Next(Some(QUEUE_RESYNC)))
}

/// `ConfigPublished` of a queue: in the document, lost to an older QueueConfig with the same
/// queue id, or left out because every Campaign naming it has ended.
fn published(q: &QueueConfig, s: &Synced) -> (bool, &'static str, String) {
    let id = &q.spec.queue_id;
    let me = super::key_of(q);
    if let Some(d) = s.duplicates.iter().find(|d| d.loser == me) {
        (
            false,
            "DuplicateQueueId",
            format!("QueueConfig {} already publishes queue {id}", d.winner),
        )
    } else if s.queue_ids.contains(id) {
        (true, "Published", prelude::applied(s))
    } else {
        (
            false,
            "NotPublished",
            "every Campaign naming this queue has ended or is being deleted".to_owned(),
        )
    }
}

/// The finalizer: its deletionTimestamp already keeps it out of the merge, so republish
/// without it. With Redis unreachable the finalizer completes anyway (deleting a QueueConfig
/// or its namespace must not hang) and a `RestoreIncomplete` Warning says the queue may
/// still be in the runtime document until the next write of it.
pub async fn cleanup<P: Platform>(
    q: &QueueConfig,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    if let Err(e) = runtime_sync::sync(ctx, now, None).await? {
        let msg = format!(
            "finalizer removed without unpublishing queue {} ({e}): it leaves the runtime config at the next successful publish",
            q.spec.queue_id
        );
        ctx.platform
            .record(
                &ObjectKey::of(q),
                Note::warning("RestoreIncomplete", "Publish", msg),
            )
            .await;
    }
    Ok(Next(None))
}
