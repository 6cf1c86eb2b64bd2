//! What a Campaign and a QueueConfig reconcile share: the status they start from, the
//! validation (an invalid spec is reported once per generation and waits for a change), the
//! publication of the merged runtime document, and the status write.

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{
    Campaign, CampaignStatus, Condition, QueueConfig, QueueConfigStatus,
};

use super::{
    Context, Error, Note, ObjectKey, Platform,
    runtime_sync::{self, Synced},
    status::{self, Conditions},
    validate,
};

/// A resource the operator validates and publishes.
#[allow(async_fn_in_trait)]
pub trait Reconciled: kube::Resource<DynamicType = ()> {
    type Status: Clone + Default;
    /// The status as read with the object.
    fn status(&self) -> Option<&Self::Status>;
    /// The status's `observedGeneration` and conditions.
    fn parts(st: &mut Self::Status) -> (&mut Option<i64>, &mut Vec<Condition>);
    /// What is wrong with the spec, if anything.
    fn validate(&self) -> Result<(), Vec<String>>;
    /// Writes `st` when it is worth a write (see [`status::campaign_needs_write`] and
    /// [`status::queue_needs_write`]).
    async fn save<P: Platform>(
        &self,
        ctx: &Context<P>,
        st: &Self::Status,
        now: DateTime<Utc>,
    ) -> Result<(), Error>;
}

impl Reconciled for Campaign {
    type Status = CampaignStatus;

    fn status(&self) -> Option<&CampaignStatus> {
        self.status.as_ref()
    }

    fn parts(st: &mut CampaignStatus) -> (&mut Option<i64>, &mut Vec<Condition>) {
        (&mut st.observed_generation, &mut st.conditions)
    }

    fn validate(&self) -> Result<(), Vec<String>> {
        validate::campaign(&self.spec)
    }

    async fn save<P: Platform>(
        &self,
        ctx: &Context<P>,
        st: &CampaignStatus,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if status::campaign_needs_write(self.status.as_ref(), st, now) {
            ctx.platform
                .write_campaign_status(self, st)
                .await
                .map_err(Error::WriteStatus)?;
        }
        Ok(())
    }
}

impl Reconciled for QueueConfig {
    type Status = QueueConfigStatus;

    fn status(&self) -> Option<&QueueConfigStatus> {
        self.status.as_ref()
    }

    fn parts(st: &mut QueueConfigStatus) -> (&mut Option<i64>, &mut Vec<Condition>) {
        (&mut st.observed_generation, &mut st.conditions)
    }

    fn validate(&self) -> Result<(), Vec<String>> {
        validate::queue_config(&self.spec)
    }

    /// The live gauges move a QueueConfig's status often enough: written on any change.
    async fn save<P: Platform>(
        &self,
        ctx: &Context<P>,
        st: &QueueConfigStatus,
        _now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if status::queue_needs_write(self.status.as_ref(), st) {
            ctx.platform
                .write_queue_status(self, st)
                .await
                .map_err(Error::WriteStatus)?;
        }
        Ok(())
    }
}

/// The old status and the one this reconcile writes (this generation observed), or `None`
/// when the spec is invalid: then `Ready=False/InvalidSpec` is written, a Warning recorded
/// once per generation, and the caller waits for the next change.
pub async fn validated<K: Reconciled, P: Platform>(
    obj: &K,
    ctx: &Context<P>,
    now: DateTime<Utc>,
) -> Result<Option<(K::Status, K::Status)>, Error> {
    let generation = obj.meta().generation;
    let mut old = obj.status().cloned().unwrap_or_default();
    let mut st = old.clone();
    *K::parts(&mut st).0 = generation;
    let Err(problems) = obj.validate() else {
        return Ok(Some((old, st)));
    };
    let msg = problems.join("; ");
    let (old_generation, old_conditions) = K::parts(&mut old);
    if *old_generation != generation
        || status::reason_of(old_conditions, status::READY) != Some("InvalidSpec")
    {
        ctx.platform
            .record(
                &ObjectKey::of(obj),
                Note::warning("InvalidSpec", "Validate", msg.clone()),
            )
            .await;
    }
    Conditions::new(K::parts(&mut st).1, now, generation).set(
        status::READY,
        false,
        "InvalidSpec",
        msg,
    );
    obj.save(ctx, &st, now).await?;
    Ok(None)
}

/// Publishes the merged runtime document, with a `ConfigPublished` Event when a new version
/// was written. With Redis unavailable, `ConfigPublished=False/RedisUnavailable` says why and
/// the result is `None`; otherwise the caller sets the condition from what was published.
pub async fn publish<P: Platform>(
    ctx: &Context<P>,
    obj: &ObjectKey,
    conditions: &mut Conditions<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Synced>, Error> {
    let s = match runtime_sync::sync(ctx, now, None).await? {
        Ok(s) => s,
        Err(e) => {
            conditions.set(
                status::CONFIG_PUBLISHED,
                false,
                "RedisUnavailable",
                e.to_string(),
            );
            return Ok(None);
        }
    };
    if s.published.written {
        let msg = format!("runtime config version {} published", s.published.version);
        ctx.platform
            .record(obj, Note::normal("ConfigPublished", "Publish", msg))
            .await;
    }
    Ok(Some(s))
}

/// `ConfigPublished`'s message when the document is out: its version and who runs it.
pub fn applied(s: &Synced) -> String {
    format!(
        "version {} applied by {} replicas",
        s.published.version, s.applied_by
    )
}
