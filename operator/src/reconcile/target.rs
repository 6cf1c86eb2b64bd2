//! A Campaign's target (a Deployment, StatefulSet or Argo Rollout): its replica count read
//! through the scale subresource, and the state of a target that does not exist (a condition
//! and a Warning, not an error).

use std::time::Duration;

use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, ReplicaStatus, ScaleTargetRef};

use super::{
    Context, Error, Next, Note, ObjectKey, Pass, Platform, Workload,
    pause::{PAUSED_REPLICAS, Pause},
    status,
};

/// How often a campaign whose target does not exist looks again.
pub const TARGET_RETRY: Duration = Duration::from_secs(5);

/// The workload the campaign scales (validation refuses a spec without one, so the fallback
/// — a Deployment without a name, which is never found — is never used).
pub(super) fn target_of(c: &Campaign) -> ScaleTargetRef {
    c.spec.target.scale_ref().unwrap_or(ScaleTargetRef {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: String::new(),
    })
}

/// The target's replicas, or `None` when it does not exist (a state, not an error).
pub(super) async fn read_target<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
) -> Result<Option<u32>, Error> {
    let target = target_of(c);
    match ctx.platform.read_scale(workload(c, &target)).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Error::ReadScale(e)),
    }
}

/// Writes the target's replicas through its scale subresource.
pub(super) async fn write_target<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    replicas: u32,
) -> Result<(), super::PlatformError> {
    let target = target_of(c);
    ctx.platform
        .write_scale(workload(c, &target), replicas)
        .await
}

fn workload<'a>(c: &'a Campaign, target: &'a ScaleTargetRef) -> Workload<'a> {
    Workload {
        namespace: c.metadata.namespace.as_deref().unwrap_or("default"),
        target,
    }
}

/// `Ready=False/TargetNotFound`, a Warning once per transition, and a look again soon so the
/// campaign recovers within seconds of the target appearing.
pub(super) async fn target_missing<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus) -> Next {
    let Pass { c, ctx, old, .. } = *p;
    let ns = c.metadata.namespace.as_deref().unwrap_or("default");
    let t = target_of(c);
    let msg = format!(
        "{} {ns}/{} not found; nothing is scaled until it exists (checked every {}s)",
        t.kind,
        t.name,
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
    p.conditions(st)
        .set(status::READY, false, "TargetNotFound", msg);
    Next(Some(TARGET_RETRY))
}

/// Paused ([`Pause`]): no scale write, or the one to `paused-replicas` (after the originals
/// are saved, so the restore still knows the pre-campaign count); the status says so.
pub(super) async fn hold<P: Platform>(
    p: &Pass<'_, P>,
    st: &mut CampaignStatus,
    current: u32,
    pause: &Pause,
) -> Result<(), Error> {
    let Pass { c, ctx, old, now } = *p;
    let desired = match pause {
        Pause::Replicas(n) => *n,
        _ => current,
    };
    if desired != current {
        super::command::save_originals(c, ctx, st, old, current).await?;
        write_target(c, ctx, desired)
            .await
            .map_err(Error::PatchScale)?;
        st.last_scale_time = Some(now);
        let msg = format!(
            "scaled {} from {current} to {desired}: {PAUSED_REPLICAS}",
            c.spec.target.describe()
        );
        ctx.platform
            .record(&ObjectKey::of(c), Note::normal("Scaled", "Scale", msg))
            .await;
    }
    let before = st.replicas.as_ref().and_then(|r| r.before);
    let n = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    st.replicas = Some(ReplicaStatus {
        current: n(current),
        desired: n(desired),
        reason: format!("paused: holding {desired} replicas"),
        before,
    });
    st.panic = false;
    st.fallback_active = false;
    Ok(())
}
