//! The Campaign pipeline: validate → phase → (conflict check → observe → decide → act) →
//! runtime document → status. Cleanup (the finalizer) puts back what the campaign changed.

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, Phase, ReplicaStatus};

use super::mark_invalid;
use super::{
    Context, Error, Next, Note, ObjectKey, Platform, command::command, key_of, runtime_sync,
    status, validate,
};
use crate::{
    phase::{commands_resources, next_wake, phase_at},
    store::memory,
};

pub async fn apply<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    let obj = ObjectKey::of(c);
    let generation = c.metadata.generation;
    let old = c.status.clone().unwrap_or_default();
    let mut st = CampaignStatus {
        observed_generation: generation,
        ..old.clone()
    };

    // Validate: an invalid spec waits for the next change instead of retrying.
    if let Err(problems) = validate::campaign(&c.spec) {
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
        save_status(c, ctx, &st, now).await?;
        return Ok(Next(None));
    }

    let phase = phase_at(&c.spec.schedule, now);
    st.phase = Some(phase);
    if old.phase.is_some_and(|p| p != phase) {
        ctx.platform
            .record(
                &obj,
                Note::normal("PhaseChanged", "Schedule", format!("{phase:?}")),
            )
            .await;
    }

    if commands_resources(phase) {
        let competitors = ctx
            .platform
            .competitors(c)
            .await
            .map_err(Error::CheckConflicts)?;
        if competitors.is_empty() {
            status::set(
                &mut st.conditions,
                status::CONFLICT,
                false,
                "NoConflict",
                "",
                now,
                generation,
            );
            command(c, ctx, &mut st, &old, now).await?;
            status::set(
                &mut st.conditions,
                status::READY,
                true,
                "Commanding",
                format!("{phase:?}"),
                now,
                generation,
            );
        } else {
            // Two controllers writing one replica count fight; refuse rather than flap.
            let msg = format!(
                "not scaling Deployment {}: also scaled by {}",
                c.spec.target.deployment,
                competitors.join(", ")
            );
            if !status::is_true(&old.conditions, status::CONFLICT) {
                ctx.platform
                    .record(&obj, Note::warning("Conflict", "Scale", msg.clone()))
                    .await;
            }
            status::set(
                &mut st.conditions,
                status::CONFLICT,
                true,
                "TargetContested",
                msg.clone(),
                now,
                generation,
            );
            status::set(
                &mut st.conditions,
                status::READY,
                false,
                "Conflict",
                msg,
                now,
                generation,
            );
        }
    } else if phase == Phase::Ended {
        restore(c, ctx, &mut st).await?;
        status::set(
            &mut st.conditions,
            status::READY,
            true,
            "Ended",
            "",
            now,
            generation,
        );
    } else {
        let msg = format!(
            "prewarming starts {} before {}",
            c.spec.schedule.prewarm, c.spec.schedule.starts_at
        );
        status::set(
            &mut st.conditions,
            status::READY,
            true,
            "Scheduled",
            msg,
            now,
            generation,
        );
    }

    publish_config(ctx, &obj, &mut st, generation, now).await?;
    save_status(c, ctx, &st, now).await?;
    Ok(Next(next_wake(&c.spec.schedule, phase, now)))
}

/// Writes the status unless nothing but the signal time changed (see
/// [`status::campaign_needs_write`]).
async fn save_status<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &CampaignStatus,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if status::campaign_needs_write(c.status.as_ref(), st, now) {
        ctx.platform
            .write_campaign_status(c, st)
            .await
            .map_err(Error::WriteStatus)?;
    }
    Ok(())
}

/// Writes the merged runtime document and records the outcome in the status.
async fn publish_config<P: Platform>(
    ctx: &Context<P>,
    obj: &ObjectKey,
    st: &mut CampaignStatus,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    match runtime_sync::sync(ctx, now, None).await? {
        Ok(s) => {
            if s.published.written {
                let msg = format!("runtime config version {} published", s.published.version);
                ctx.platform
                    .record(obj, Note::normal("ConfigPublished", "Publish", msg))
                    .await;
            }
            st.published_version = i64::try_from(s.published.version).ok();
            st.applied_by_replicas = i32::try_from(s.applied_by).ok();
            let msg = format!(
                "version {} applied by {} replicas",
                s.published.version, s.applied_by
            );
            status::set(
                &mut st.conditions,
                status::CONFIG_PUBLISHED,
                true,
                "Published",
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
    Ok(())
}

/// Puts back the replica count and Redis settings recorded before the campaign, once.
async fn restore<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
) -> Result<(), Error> {
    let obj = ObjectKey::of(c);
    let ns = obj.namespace.as_str();
    let deployment = c.spec.target.deployment.as_str();
    if let Some(before) = st.replicas.as_ref().and_then(|r| r.before) {
        let current = ctx
            .platform
            .read_scale(ns, deployment)
            .await
            .map_err(Error::ReadScale)?;
        let before_u = u32::try_from(before).unwrap_or(0);
        if current != before_u {
            ctx.platform
                .write_scale(ns, deployment, before_u)
                .await
                .map_err(Error::PatchScale)?;
            let msg = format!(
                "restored {deployment} from {current} to its pre-campaign {before} replicas"
            );
            ctx.platform
                .record(&obj, Note::normal("Restored", "Scale", msg))
                .await;
        }
        let reason = "restored pre-campaign replicas".to_owned();
        st.replicas = Some(ReplicaStatus {
            current: i32::try_from(current).unwrap_or(i32::MAX),
            desired: before,
            reason,
            before: None,
        });
    }
    if let Some(prev) = st.redis_before.clone() {
        st.redis_applied = Some(
            memory::restore(&ctx.redis, &prev)
                .await
                .map_err(Error::RestoreRedis)?,
        );
        st.redis_before = None;
    }
    st.panic = false;
    st.fallback_active = false;
    Ok(())
}

/// The finalizer: restore, take the campaign's queues out of the runtime document, forget.
pub async fn cleanup<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    let key = key_of(c);
    let mut st = c.status.clone().unwrap_or_default();
    restore(c, ctx, &mut st).await?;
    runtime_sync::retire_queues_of(ctx, c, now).await?;
    runtime_sync::sync(ctx, now, Some(&key))
        .await?
        .map_err(Error::Unpublish)?;
    ctx.memory.lock().await.remove(&key);
    ctx.metrics.forget(&key);
    Ok(Next(None))
}
