//! The Campaign pipeline: validate → phase → target → (conflict check → observe → decide →
//! act) → runtime document → status. After `endsAt` it steps back to the originals; the
//! finalizer puts them back at once and never hangs on what it cannot restore.

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, Phase, ReplicaStatus};

use super::mark_invalid;
use super::{
    Context, Error, Next, Note, ObjectKey, Platform, command::command, key_of, originals,
    runtime_sync, status, validate,
};
use crate::{
    phase::{ACTIVE_RESYNC, next_wake, phase_at},
    scaling::{self, Policy},
    store::memory,
};

/// How often a campaign whose Deployment does not exist looks again.
pub const TARGET_RETRY: Duration = Duration::from_secs(5);

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
    let next = match phase {
        Phase::Scheduled => scheduled(c, ctx, &mut st, &old, now).await?,
        Phase::Prewarming | Phase::Active => commanding(c, ctx, &mut st, &old, now).await?,
        Phase::Ended => ended(c, ctx, &mut st, &old, now).await?,
    };
    publish_config(ctx, &obj, &mut st, generation, now).await?;
    save_status(c, ctx, &st, now).await?;
    Ok(next)
}

/// Before prewarming nothing is changed, but a missing target is reported already.
async fn scheduled<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    if read_target(c, ctx).await?.is_none() {
        return Ok(target_missing(c, ctx, st, old, now).await);
    }
    let msg = format!(
        "prewarming starts {} before {}",
        c.spec.schedule.prewarm, c.spec.schedule.starts_at
    );
    let generation = c.metadata.generation;
    status::set(
        &mut st.conditions,
        status::READY,
        true,
        "Scheduled",
        msg,
        now,
        generation,
    );
    Ok(Next(next_wake(&c.spec.schedule, Phase::Scheduled, now)))
}

/// Prewarming/Active: refuse a contested Deployment, report a missing one, else command.
async fn commanding<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    let generation = c.metadata.generation;
    let phase = st.phase.unwrap_or(Phase::Active);
    let competitors = ctx
        .platform
        .competitors(c)
        .await
        .map_err(Error::CheckConflicts)?;
    if !competitors.is_empty() {
        contested(c, ctx, st, old, &competitors, now).await;
        return Ok(Next(next_wake(&c.spec.schedule, phase, now)));
    }
    let conflict = status::CONFLICT;
    status::set(
        &mut st.conditions,
        conflict,
        false,
        "NoConflict",
        "",
        now,
        generation,
    );
    let Some(current) = read_target(c, ctx).await? else {
        return Ok(target_missing(c, ctx, st, old, now).await);
    };
    command(c, ctx, st, old, current, now).await?;
    let msg = format!("{phase:?}");
    status::set(
        &mut st.conditions,
        status::READY,
        true,
        "Commanding",
        msg,
        now,
        generation,
    );
    Ok(Next(next_wake(&c.spec.schedule, phase, now)))
}

/// Two controllers writing one replica count fight; refuse rather than flap.
async fn contested<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    competitors: &[String],
    now: DateTime<Utc>,
) {
    let generation = c.metadata.generation;
    let msg = format!(
        "not scaling Deployment {}: also scaled by {}",
        c.spec.target.deployment,
        competitors.join(", ")
    );
    if !status::is_true(&old.conditions, status::CONFLICT) {
        ctx.platform
            .record(
                &ObjectKey::of(c),
                Note::warning("Conflict", "Scale", msg.clone()),
            )
            .await;
    }
    let (conflict, ready) = (status::CONFLICT, status::READY);
    status::set(
        &mut st.conditions,
        conflict,
        true,
        "TargetContested",
        msg.clone(),
        now,
        generation,
    );
    status::set(
        &mut st.conditions,
        ready,
        false,
        "Conflict",
        msg,
        now,
        generation,
    );
}

/// The Deployment's replicas, or `None` when it does not exist (a state, not an error).
async fn read_target<P: Platform>(c: &Campaign, ctx: &Context<P>) -> Result<Option<u32>, Error> {
    let ns = c.metadata.namespace.as_deref().unwrap_or("default");
    match ctx.platform.read_scale(ns, &c.spec.target.deployment).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Error::ReadScale(e)),
    }
}

/// `Ready=False/TargetNotFound`, a Warning once per transition, and a look again soon so the
/// campaign recovers within seconds of the Deployment appearing.
async fn target_missing<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    now: DateTime<Utc>,
) -> Next {
    let ns = c.metadata.namespace.as_deref().unwrap_or("default");
    let msg = format!(
        "Deployment {ns}/{} not found; nothing is scaled until it exists (checked every {}s)",
        c.spec.target.deployment,
        TARGET_RETRY.as_secs()
    );
    if status::reason_of(&old.conditions, status::READY) != Some("TargetNotFound") {
        ctx.platform
            .record(
                &ObjectKey::of(c),
                Note::warning("TargetNotFound", "Scale", msg.clone()),
            )
            .await;
    }
    let generation = c.metadata.generation;
    status::set(
        &mut st.conditions,
        status::READY,
        false,
        "TargetNotFound",
        msg,
        now,
        generation,
    );
    Next(Some(TARGET_RETRY))
}

/// After `endsAt`: step the replicas down toward the originals with the campaign's scale-down
/// policy, put Redis back once its data fits, and stop resyncing when both are done.
async fn ended<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    st.panic = false;
    st.fallback_active = false;
    let before = st.replicas.as_ref().and_then(|r| r.before);
    let replicas = match before {
        None => Some(true),
        Some(before) => match read_target(c, ctx).await? {
            None => None,
            Some(current) => Some(step_toward(c, ctx, st, current, before, now).await?),
        },
    };
    let redis_done = restore_redis_when_it_fits(c, ctx, st, old, now).await;
    let generation = c.metadata.generation;
    match replicas {
        None => Ok(target_missing(c, ctx, st, old, now).await),
        Some(true) if redis_done => {
            status::set(
                &mut st.conditions,
                status::READY,
                true,
                "Ended",
                "",
                now,
                generation,
            );
            Ok(Next(None))
        }
        Some(_) => {
            let msg = "stepping back to the pre-campaign replicas and Redis settings";
            status::set(
                &mut st.conditions,
                status::READY,
                true,
                "Restoring",
                msg,
                now,
                generation,
            );
            Ok(Next(Some(ACTIVE_RESYNC)))
        }
    }
}

/// One step of the ended campaign's scale-down ([`scaling::step_down`]); true once the
/// Deployment is back at `before` (which then leaves the status).
async fn step_toward<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    current: u32,
    before: i32,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let (key, obj) = (key_of(c), ObjectKey::of(c));
    let deployment = c.spec.target.deployment.as_str();
    let floor = u32::try_from(before).unwrap_or(0);
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let mut memory = ctx.memory.lock().await.remove(&key).unwrap_or_default();
    let policy = Policy::from_spec(&c.spec.scaling);
    let d = scaling::step_down(&policy, now_ms, current, floor, &mut memory.history);
    let written = if d.desired == current {
        Ok(())
    } else {
        ctx.platform
            .write_scale(&obj.namespace, deployment, d.desired)
            .await
    };
    if written.is_ok() {
        memory.history.record_change(now_ms, current, d.desired);
    }
    ctx.memory.lock().await.insert(key, memory);
    written.map_err(Error::PatchScale)?;
    let done = d.desired == floor;
    if d.desired != current {
        st.last_scale_time = Some(now);
        let (reason, msg) = if done {
            (
                "Restored",
                format!(
                    "restored {deployment} from {current} to its pre-campaign {before} replicas"
                ),
            )
        } else {
            (
                "Scaled",
                format!(
                    "scaled {deployment} from {current} to {}: {}",
                    d.desired, d.reason
                ),
            )
        };
        ctx.platform
            .record(&obj, Note::normal(reason, "Scale", msg))
            .await;
    }
    st.replicas = Some(ReplicaStatus {
        current: i32::try_from(current).unwrap_or(i32::MAX),
        desired: i32::try_from(d.desired).unwrap_or(i32::MAX),
        reason: if done {
            "restored pre-campaign replicas".into()
        } else {
            d.reason
        },
        before: (!done).then_some(before),
    });
    Ok(done)
}

/// Puts the saved Redis settings back when `used_memory` fits under the saved `maxmemory`,
/// otherwise keeps the campaign's and says so (`RedisConfigured=False/RestoreDeferred`).
/// True when nothing is left to restore.
async fn restore_redis_when_it_fits<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    now: DateTime<Utc>,
) -> bool {
    let Some(prev) = st.redis_before.clone() else {
        return true;
    };
    let (ok, reason, msg) = match restore_redis(ctx, &prev).await {
        Ok(applied) => {
            let msg = format!(
                "restored maxmemory {} maxmemory-policy {}",
                applied.maxmemory, applied.maxmemory_policy
            );
            st.redis_applied = Some(applied);
            st.redis_before = None;
            ctx.platform
                .record(
                    &ObjectKey::of(c),
                    Note::normal("Restored", "ConfigureRedis", msg.clone()),
                )
                .await;
            (true, "Restored", msg)
        }
        Err(RestoreFailure::Deferred(msg)) => (false, "RestoreDeferred", msg),
        Err(RestoreFailure::Redis(e)) => (false, "RedisUnavailable", e.to_string()),
    };
    if !ok && status::reason_of(&old.conditions, status::REDIS_CONFIGURED) != Some(reason) {
        ctx.platform
            .record(
                &ObjectKey::of(c),
                Note::warning(reason, "ConfigureRedis", msg.clone()),
            )
            .await;
    }
    let generation = c.metadata.generation;
    status::set(
        &mut st.conditions,
        status::REDIS_CONFIGURED,
        ok,
        reason,
        msg,
        now,
        generation,
    );
    ok
}

enum RestoreFailure {
    /// The data does not fit under the saved `maxmemory` (why, in words).
    Deferred(String),
    Redis(memory::MemoryError),
}

/// `CONFIG SET` of the saved settings, if [`originals::redis_restore`] says they fit.
async fn restore_redis<P: Platform>(
    ctx: &Context<P>,
    prev: &floodgate_crds::v1alpha1::RedisApplied,
) -> Result<floodgate_crds::v1alpha1::RedisApplied, RestoreFailure> {
    let used = memory::used_memory(&ctx.redis)
        .await
        .map_err(RestoreFailure::Redis)?;
    match originals::redis_restore(prev, used) {
        originals::RedisRestore::Now => memory::restore(&ctx.redis, prev)
            .await
            .map_err(RestoreFailure::Redis),
        originals::RedisRestore::Defer { used, limit } => Err(RestoreFailure::Deferred(format!(
            "used_memory {used} does not fit under the pre-campaign maxmemory {limit}: keeping \
             the campaign's maxmemory and policy (pre-campaign policy {}) until it does",
            prev.maxmemory_policy
        ))),
    }
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

/// The finalizer: the user deleting the campaign asked for the originals back, so they are
/// restored at once (no step-down), then its queues leave the runtime document. It never
/// hangs: a missing Deployment, data that does not fit under the saved `maxmemory`, or an
/// unreachable Redis is skipped and named in one `RestoreIncomplete` Warning.
pub async fn cleanup<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Next, Error> {
    let key = key_of(c);
    let st = c.status.clone().unwrap_or_default();
    let mut missed = Vec::new();
    restore_replicas_now(c, ctx, &st, &mut missed).await?;
    let mut redis_up = true;
    if let Some(prev) = &st.redis_before {
        match restore_redis(ctx, prev).await {
            Ok(_) => {}
            Err(RestoreFailure::Deferred(why)) => missed.push(format!("Redis settings: {why}")),
            Err(RestoreFailure::Redis(e)) => {
                redis_up = false;
                missed.push(format!(
                    "Redis maxmemory {} and maxmemory-policy {}: {e}",
                    prev.maxmemory, prev.maxmemory_policy
                ));
            }
        }
    }
    if redis_up {
        unpublish(c, ctx, now, &mut missed).await?;
    } else {
        // One unreachable Redis is enough: each further call would wait out its reconnects.
        missed.push(format!(
            "queues [{}] not retired from the runtime config (Redis unreachable): once Redis is back they are published as standalone waiting rooms; delete their QueueConfigs if that is not wanted",
            c.spec.queues.join(", ")
        ));
    }
    if !missed.is_empty() {
        let msg = format!("finalizer removed without restoring: {}", missed.join("; "));
        ctx.platform
            .record(
                &ObjectKey::of(c),
                Note::warning("RestoreIncomplete", "Restore", msg),
            )
            .await;
    }
    ctx.memory.lock().await.remove(&key);
    ctx.metrics.forget(&key);
    Ok(Next(None))
}

/// Patches the Deployment straight back to `replicas.before`; a missing one is noted.
async fn restore_replicas_now<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &CampaignStatus,
    missed: &mut Vec<String>,
) -> Result<(), Error> {
    let Some(before) = st.replicas.as_ref().and_then(|r| r.before) else {
        return Ok(());
    };
    let obj = ObjectKey::of(c);
    let deployment = c.spec.target.deployment.as_str();
    let gone = || {
        format!(
            "replicas: Deployment {}/{deployment} not found, so not scaled back to {before}",
            obj.namespace
        )
    };
    let Some(current) = read_target(c, ctx).await? else {
        missed.push(gone());
        return Ok(());
    };
    let before_u = u32::try_from(before).unwrap_or(0);
    if current == before_u {
        return Ok(());
    }
    match ctx
        .platform
        .write_scale(&obj.namespace, deployment, before_u)
        .await
    {
        Err(e) if e.is_not_found() => missed.push(gone()),
        Err(e) => return Err(Error::PatchScale(e)),
        Ok(()) => {
            let msg = format!(
                "restored {deployment} from {current} to its pre-campaign {before} replicas"
            );
            ctx.platform
                .record(&obj, Note::normal("Restored", "Scale", msg))
                .await;
        }
    }
    Ok(())
}

/// Retires the campaign's queues and republishes without them; a Redis failure is noted.
async fn unpublish<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    now: DateTime<Utc>,
    missed: &mut Vec<String>,
) -> Result<(), Error> {
    let key = key_of(c);
    let queues = c.spec.queues.join(", ");
    let result = match runtime_sync::retire_queues_of(ctx, c, now).await {
        Err(Error::Unpublish(e)) => Err(e),
        Err(e) => return Err(e),
        Ok(()) => runtime_sync::sync(ctx, now, Some(&key)).await?.map(|_| ()),
    };
    if let Err(e) = result {
        missed.push(format!(
            "queues [{queues}] not retired from the runtime config ({e}): once Redis is back they are published as standalone waiting rooms; delete their QueueConfigs if that is not wanted"
        ));
    }
    Ok(())
}
