//! The QueueConfig pipeline: validate → runtime document → read the queue's gauges → status.

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{QueueConfig, QueueConfigStatus};

use super::{
    Context, Error, Next, Note, ObjectKey, Platform, mark_invalid, runtime_sync, status, validate,
};
use crate::observe::{self, depth::WAITING_GAUGE};

/// QueueConfigs have no schedule; their status (waiting, applied-by) is refreshed this often.
pub const QUEUE_RESYNC: Duration = Duration::from_secs(10);

pub async fn apply<P: Platform>(
    q: &QueueConfig,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    let obj = ObjectKey::of(q);
    let generation = q.metadata.generation;
    let old = q.status.clone().unwrap_or_default();
    let mut st = QueueConfigStatus {
        observed_generation: generation,
        ..old.clone()
    };

    if let Err(problems) = validate::queue_config(&q.spec) {
        let seen = (old.observed_generation, old.conditions.as_slice());
        mark_invalid(
            ctx,
            &obj,
            seen,
            &mut st.conditions,
            &problems,
            now,
            generation,
        )
        .await;
        save_status(q, ctx, &st).await?;
        return Ok(Next(None));
    }

    match runtime_sync::sync(ctx, now, None).await? {
        Ok(s) => {
            let id = &q.spec.queue_id;
            let me = super::key_of(q);
            let (ok, reason, msg) = if let Some(d) = s.duplicates.iter().find(|d| d.loser == me) {
                (
                    false,
                    "DuplicateQueueId",
                    format!("QueueConfig {} already publishes queue {id}", d.winner),
                )
            } else if s.queue_ids.contains(id) {
                (
                    true,
                    "Published",
                    format!(
                        "version {} applied by {} replicas",
                        s.published.version, s.applied_by
                    ),
                )
            } else {
                (
                    false,
                    "NotPublished",
                    "every Campaign naming this queue has ended or is being deleted".to_owned(),
                )
            };
            if s.published.written {
                let msg = format!("runtime config version {} published", s.published.version);
                ctx.platform
                    .record(&obj, Note::normal("ConfigPublished", "Publish", msg))
                    .await;
            }
            st.published_version = i64::try_from(s.published.version).ok().filter(|_| ok);
            st.applied_by_replicas = i32::try_from(s.applied_by).ok().filter(|_| ok);
            status::set(
                &mut st.conditions,
                status::CONFIG_PUBLISHED,
                ok,
                reason,
                msg,
                now,
                generation,
            );
        }
        Err(e) => status::set(
            &mut st.conditions,
            status::CONFIG_PUBLISHED,
            false,
            "RedisUnavailable",
            e.to_string(),
            now,
            generation,
        ),
    }

    // The queue's live numbers, when an app serving it can be scraped.
    let urls = ctx.platform.queue_scrape_urls(q).await.unwrap_or_default();
    if let Ok(scrape) = observe::scrape(&ctx.http, &urls).await {
        let gauge = |name| scrape.queue_gauge(name, &q.spec.queue_id).map(|v| v as i64);
        st.waiting = gauge(WAITING_GAUGE);
        st.active = gauge("floodgate_queue_active");
        st.admitted_total = gauge("floodgate_queue_admitted_total");
    }
    status::set(
        &mut st.conditions,
        status::READY,
        true,
        "Valid",
        "",
        now,
        generation,
    );
    save_status(q, ctx, &st).await?;
    Ok(Next(Some(QUEUE_RESYNC)))
}

/// Writes the status only when it changed (the live gauges move it often enough).
async fn save_status<P: Platform>(
    q: &QueueConfig,
    ctx: &Context<P>,
    st: &QueueConfigStatus,
) -> Result<(), Error> {
    if status::queue_needs_write(q.status.as_ref(), st) {
        ctx.platform
            .write_queue_status(q, st)
            .await
            .map_err(Error::WriteStatus)?;
    }
    Ok(())
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
