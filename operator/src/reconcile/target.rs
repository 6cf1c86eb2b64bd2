//! A Campaign's target Deployment: its replica count read through the scale subresource, and
//! the state of a target that does not exist (a condition and a Warning, not an error).

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus};

use super::{Context, Error, Next, Note, ObjectKey, Platform, status};

/// How often a campaign whose Deployment does not exist looks again.
pub const TARGET_RETRY: Duration = Duration::from_secs(5);

/// The Deployment's replicas, or `None` when it does not exist (a state, not an error).
pub(super) async fn read_target<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
) -> Result<Option<u32>, Error> {
    let ns = c.metadata.namespace.as_deref().unwrap_or("default");
    match ctx.platform.read_scale(ns, &c.spec.target.deployment).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(Error::ReadScale(e)),
    }
}

/// `Ready=False/TargetNotFound`, a Warning once per transition, and a look again soon so the
/// campaign recovers within seconds of the Deployment appearing.
pub(super) async fn target_missing<P: Platform>(
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
