//! The Campaign pipeline: validate → phase → target → (conflict check → observe → decide →
//! act) → runtime document → status. A missing target is a state (`target.rs`); after
//! `endsAt` it steps back to the originals, and the finalizer puts them back at once and never
//! hangs on what it cannot restore (`restore.rs`).

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, Phase};

use super::mark_invalid;
use super::{
    Context, Error, Next, Note, ObjectKey, Platform,
    command::command,
    key_of,
    pause::{self, Pause},
    restore::ended,
    runtime_sync, status,
    target::{hold, read_target, target_missing},
    validate,
};
use crate::{
    phase::{commands_resources, next_wake, phase_at},
    window::window_at,
};

pub use super::ramp::on_delete as ramp_on_delete;
pub use super::restore::cleanup;
pub use super::target::TARGET_RETRY;

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

    let mut phase = phase_at(&c.spec.schedule, now);
    // Between two occurrences of a recurrence the last one's restore finishes first.
    let restoring = st.replicas.as_ref().is_some_and(|r| r.before.is_some());
    if phase == Phase::Scheduled && c.spec.schedule.recurrence.is_some() && restoring {
        phase = Phase::Ended;
    }
    st.phase = Some(phase);
    st.window = window_at(&c.spec.schedule, now).ok();
    st.target = c
        .spec
        .target
        .scale_ref()
        .map(|r| format!("{}/{}", r.kind, r.name));
    let pause = pause::of(c.metadata.annotations.as_ref());
    paused_condition(c, ctx, &mut st, &old, &pause, now).await;
    if old.phase.is_some_and(|p| p != phase) {
        ctx.platform
            .record(
                &obj,
                Note::normal("PhaseChanged", "Schedule", format!("{phase:?}")),
            )
            .await;
    }
    let mut next = match phase {
        Phase::Scheduled => scheduled(c, ctx, &mut st, &old, now).await?,
        Phase::Prewarming | Phase::Active => commanding(c, ctx, &mut st, &old, &pause, now).await?,
        Phase::Ended => ended(c, ctx, &mut st, &old, &pause, now).await?,
    };
    if next.0.is_none() && c.spec.schedule.recurrence.is_some() {
        // A recurring campaign whose restore is done is Scheduled for the next occurrence
        // from its next reconcile on (which then sleeps until that one's prewarm).
        next = Next(Some(std::time::Duration::from_secs(1)));
    }
    summary_conditions(&mut st, phase, generation, now);
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
    let starts = st
        .window
        .map_or_else(|| "?".to_owned(), |w| w.starts_at.to_rfc3339());
    let msg = format!(
        "prewarming starts {} before {starts}",
        c.spec.schedule.prewarm
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

/// Prewarming/Active: refuse a contested target, report a missing one, hold a paused one,
/// else command.
async fn commanding<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    pause: &Pause,
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
    ctx.metrics.conflict(&key_of(c), false);
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
    if pause.is_paused() {
        hold(c, ctx, st, old, current, pause, now).await?;
        let msg = status::message_of(&st.conditions, status::PAUSED).to_owned();
        status::set(
            &mut st.conditions,
            status::READY,
            true,
            "Paused",
            msg,
            now,
            generation,
        );
        return Ok(Next(next_wake(&c.spec.schedule, phase, now)));
    }
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
        "not scaling {}: also scaled by {}",
        c.spec.target.describe(),
        competitors.join(", ")
    );
    ctx.metrics.conflict(&key_of(c), true);
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

/// `Paused` from the annotations ([`pause::of`]); an unreadable one also gets a Warning once.
async fn paused_condition<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    pause: &Pause,
    now: DateTime<Utc>,
) {
    let (on, reason, msg) = match pause {
        Pause::Off => (false, "NotPaused", String::new()),
        Pause::Hold { why } => (true, "Paused", why.clone()),
        Pause::Replicas(n) => (
            true,
            "PausedAtReplicas",
            format!("{}: holding {n} replicas", pause::PAUSED_REPLICAS),
        ),
        Pause::Invalid(msg) => (true, "InvalidPauseAnnotation", msg.clone()),
    };
    if reason == "InvalidPauseAnnotation"
        && status::message_of(&old.conditions, status::PAUSED) != msg
    {
        ctx.platform
            .record(
                &ObjectKey::of(c),
                Note::warning("InvalidPauseAnnotation", "Pause", msg.clone()),
            )
            .await;
    }
    let generation = c.metadata.generation;
    status::set(
        &mut st.conditions,
        status::PAUSED,
        on,
        reason,
        msg,
        now,
        generation,
    );
}

/// `Active` (the campaign is scaling its target now) and `Fallback` (it runs on
/// fallbackReplicas because metrics are unavailable), for the printer columns.
fn summary_conditions(
    st: &mut CampaignStatus,
    phase: Phase,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let commanding = commands_resources(phase)
        && status::reason_of(&st.conditions, status::READY) == Some("Commanding");
    if !commanding {
        st.fallback_active = false;
    }
    let why = status::reason_of(&st.conditions, status::READY)
        .unwrap_or("Unknown")
        .to_owned();
    let (reason, msg) = if commanding {
        ("Scaling", format!("{phase:?}: scaling the target"))
    } else {
        ("NotScaling", format!("{phase:?}: {why}"))
    };
    status::set(
        &mut st.conditions,
        status::ACTIVE,
        commanding,
        reason,
        msg,
        now,
        generation,
    );
    let fallback = st.fallback_active;
    let (reason, msg) = if fallback {
        (
            "MetricsUnavailable",
            "running on the fallback replica count",
        )
    } else {
        ("SignalsRead", "")
    };
    status::set(
        &mut st.conditions,
        status::FALLBACK,
        fallback,
        reason,
        msg,
        now,
        generation,
    );
}
