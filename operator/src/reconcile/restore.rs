//! Putting back what a Campaign changed: after `endsAt` a step-down with the campaign's
//! scale-down policy and Redis once its data fits; on deletion (the finalizer) everything at
//! once, never hanging on what cannot be restored.

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, ReplicaStatus};

use super::{
    CampaignMemory, Context, Error, Next, Note, ObjectKey, Pass, Platform, key_of, originals,
    pause::Pause,
    runtime_sync, status,
    target::{hold, read_target, target_missing, write_target},
};
use crate::{
    phase::ACTIVE_RESYNC,
    scaling::{self, Policy},
    store::memory,
};

/// After `endsAt`: step the replicas down toward the originals with the campaign's scale-down
/// policy, put Redis back once its data fits, and stop resyncing when both are done.
pub(super) async fn ended<P: Platform>(
    p: &Pass<'_, P>,
    st: &mut CampaignStatus,
    pause: &Pause,
) -> Result<Next, Error> {
    let Pass { c, ctx, now, .. } = *p;
    st.panic = false;
    st.fallback_active = false;
    let before = st.replicas.as_ref().and_then(|r| r.before);
    let replicas = match before {
        None => Some(true),
        Some(before) => match read_target(c, ctx).await? {
            None => None,
            Some(current) if pause.is_paused() => {
                hold(p, st, current, pause).await?;
                Some(false)
            }
            Some(current) if !c.spec.restore.to_original_replica_count => {
                leave(c, ctx, st, current).await;
                Some(true)
            }
            Some(current) => Some(step_toward(c, ctx, st, current, before, now).await?),
        },
    };
    let redis_done = restore_redis_when_it_fits(p, st).await;
    match replicas {
        None => Ok(target_missing(p, st).await),
        Some(true) if redis_done => {
            p.conditions(st).set(status::READY, true, "Ended", "");
            Ok(Next(None))
        }
        Some(_) => {
            let msg = "stepping back to the pre-campaign replicas and Redis settings";
            p.conditions(st).set(status::READY, true, "Restoring", msg);
            Ok(Next(Some(ACTIVE_RESYNC)))
        }
    }
}

/// `restore.toOriginalReplicaCount: false`: the replicas stay where the campaign left them
/// and the pre-campaign count leaves the status (nothing left to restore).
async fn leave<P: Platform>(c: &Campaign, ctx: &Context<P>, st: &mut CampaignStatus, current: u32) {
    let msg = format!(
        "left {} at {current} replicas (restore.toOriginalReplicaCount is false)",
        c.spec.target.describe()
    );
    ctx.platform
        .record(
            &ObjectKey::of(c),
            Note::normal("NotRestored", "Scale", msg.clone()),
        )
        .await;
    let n = i32::try_from(current).unwrap_or(i32::MAX);
    st.replicas = Some(ReplicaStatus {
        current: n,
        desired: n,
        reason: msg,
        before: None,
    });
}

/// The next count after the end: the ramp-down's ([`originals::ramp_step`]) when the spec
/// has one, else the campaign's scale-down policy ([`scaling::step_down`]).
fn next_count(
    c: &Campaign,
    st: &CampaignStatus,
    (current, floor): (u32, u32),
    now: DateTime<Utc>,
    history: &mut scaling::History,
) -> (u32, String) {
    if let Some(r) = &c.spec.restore.ramp_down {
        let desired = originals::ramp_step(r, current, floor, st.last_scale_time, now);
        let reason = match desired {
            Some(_) => format!("ramping down to the pre-campaign {floor} replicas"),
            None => format!("ramping down: next step after {}s", r.period_seconds),
        };
        return (desired.unwrap_or(current), reason);
    }
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let policy = Policy::from_spec(&c.spec.scaling);
    let d = scaling::step_down(&policy, now_ms, current, floor, history);
    (d.desired, d.reason)
}

/// One step back toward the originals ([`next_count`]); true once the target is back at
/// `before` (which then leaves the status).
async fn step_toward<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    current: u32,
    before: i32,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let (key, obj) = (key_of(c), ObjectKey::of(c));
    let deployment = c.spec.target.describe();
    let floor = u32::try_from(before).unwrap_or(0);
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let mut memory = CampaignMemory::take(ctx, &key, st).await;
    let (desired, why) = next_count(c, st, (current, floor), now, &mut memory.history);
    let written = if desired == current {
        Ok(())
    } else {
        write_target(c, ctx, desired).await
    };
    if written.is_ok() {
        memory.history.record_change(now_ms, current, desired);
    }
    let done = written.is_ok() && desired == floor;
    // Kept in the status until the step-down is over, so a restart mid-way honours it.
    st.decision = (!done).then(|| memory.history.to_status());
    ctx.memory.lock().await.insert(key, memory);
    written.map_err(Error::PatchScale)?;
    if desired != current {
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
                format!("scaled {deployment} from {current} to {}: {}", desired, why),
            )
        };
        ctx.platform
            .record(&obj, Note::normal(reason, "Scale", msg))
            .await;
    }
    st.replicas = Some(ReplicaStatus {
        current: i32::try_from(current).unwrap_or(i32::MAX),
        desired: i32::try_from(desired).unwrap_or(i32::MAX),
        reason: if done {
            "restored pre-campaign replicas".into()
        } else {
            why
        },
        before: (!done).then_some(before),
    });
    Ok(done)
}

/// Puts the saved Redis settings back when `used_memory` fits under the saved `maxmemory`,
/// otherwise keeps the campaign's and says so (`RedisConfigured=False/RestoreDeferred`).
/// True when nothing is left to restore.
async fn restore_redis_when_it_fits<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus) -> bool {
    let Pass { c, ctx, old, .. } = *p;
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
    p.conditions(st)
        .set(status::REDIS_CONFIGURED, ok, reason, msg);
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
    if !c.spec.restore.to_original_replica_count {
        return Ok(());
    }
    let obj = ObjectKey::of(c);
    let deployment = c.spec.target.describe();
    let gone = || {
        format!(
            "replicas: {deployment} in {} not found, so not scaled back to {before}",
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
    match write_target(c, ctx, before_u).await {
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
