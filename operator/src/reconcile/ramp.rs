//! The ramp-down on deletion (`restore.rampDown`): before the finalizer's cleanup runs, the
//! target walks down one step per period while the object stays (kept by the finalizer),
//! at most `rampDown.timeout` after the deletion mark; then the cleanup restores the rest in
//! one jump. Without a ramp-down the cleanup runs at once, as before.

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, RampDown, ReplicaStatus};

use super::{
    Context, Error, Next, Note, ObjectKey, Platform, originals, status,
    target::{read_target, write_target},
};

/// `Some(next)`: a ramp step was taken (or is due later), look again then and keep the
/// finalizer. `None`: nothing (more) to ramp, run the cleanup now.
pub async fn on_delete<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Option<Next>, Error> {
    let (Some(r), true) = (
        &c.spec.restore.ramp_down,
        c.spec.restore.to_original_replica_count,
    ) else {
        return Ok(None);
    };
    let mut st = c.status.clone().unwrap_or_default();
    let Some(before) = st.replicas.as_ref().and_then(|r| r.before) else {
        return Ok(None);
    };
    if timed_out(c, ctx, r, now).await {
        return Ok(None);
    }
    let Some(current) = read_target(c, ctx).await? else {
        return Ok(None);
    };
    let floor = u32::try_from(before).unwrap_or(0);
    if current <= floor {
        return Ok(None);
    }
    let period = Duration::from_secs(u64::try_from(r.period_seconds.max(1)).unwrap_or(1));
    let Some(next) = originals::ramp_step(r, current, floor, st.last_scale_time, now) else {
        return Ok(Some(Next(Some(Duration::from_secs(1)))));
    };
    ramp_to(c, ctx, &mut st, (current, next, before), now).await?;
    Ok(Some(Next(Some(if next == floor {
        Duration::from_secs(1)
    } else {
        period
    }))))
}

/// Whether the ramp-down is past `rampDown.timeout` after the deletion mark (a Warning says
/// the rest is restored at once).
async fn timed_out<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    r: &RampDown,
    now: DateTime<Utc>,
) -> bool {
    let marked = c
        .metadata
        .deletion_timestamp
        .as_ref()
        .and_then(|t| DateTime::from_timestamp_millis(t.0.as_millisecond()))
        .unwrap_or(now);
    let timeout = chrono::Duration::milliseconds(i64::try_from(r.timeout.as_millis()).unwrap_or(0));
    if now - marked < timeout {
        return false;
    }
    let msg = format!(
        "ramp-down not finished {} after the deletion: restoring the rest at once",
        r.timeout
    );
    ctx.platform
        .record(
            &ObjectKey::of(c),
            Note::warning("RampDownTimedOut", "Restore", msg),
        )
        .await;
    true
}

/// One ramp step from `current` to `next` (pre-campaign `before`): the scale write, an
/// Event, and the status (written now: the object is being deleted).
async fn ramp_to<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    (current, next, before): (u32, u32, i32),
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let floor = u32::try_from(before).unwrap_or(0);
    let obj = ObjectKey::of(c);
    write_target(c, ctx, next)
        .await
        .map_err(Error::PatchScale)?;
    let msg = format!(
        "deleting: ramped {} from {current} to {next} (pre-campaign {before})",
        c.spec.target.describe()
    );
    let reason = if next == floor { "Restored" } else { "Scaled" };
    ctx.platform
        .record(&obj, Note::normal(reason, "Restore", msg.clone()))
        .await;
    let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    st.last_scale_time = Some(now);
    st.replicas = Some(ReplicaStatus {
        current: n(current),
        desired: n(next),
        reason: msg.clone(),
        before: Some(before),
    });
    status::Conditions::of(c, &mut st.conditions, now).set(status::READY, true, "RampingDown", msg);
    ctx.platform
        .write_campaign_status(c, st)
        .await
        .map_err(Error::WriteStatus)?;
    Ok(())
}
