//! The Campaign pipeline: validate → phase → target → (conflict check → observe → decide →
//! act) → runtime document → status. A missing target is a state (`target.rs`); after
//! `endsAt` it steps back to the originals, and the finalizer puts them back at once and never
//! hangs on what it cannot restore (`restore.rs`).

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, Phase};

use super::{
    Context, Error, Next, Note, ObjectKey, Pass, Platform,
    command::command,
    key_of,
    pause::{self, Pause},
    prelude::{self, Reconciled},
    restore::ended,
    status::{self, Conditions},
    target::{hold, read_target, target_missing},
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
    let Some((old, mut st)) = prelude::validated(c, ctx, now).await? else {
        return Ok(Next(None));
    };
    let p = &Pass {
        c,
        ctx,
        old: &old,
        now,
    };
    let phase = enter_phase(c, &mut st, now);
    let pause = pause::of(c.metadata.annotations.as_ref());
    paused_condition(p, &mut st, &pause).await;
    if old.phase.is_some_and(|p| p != phase) {
        let note = Note::normal("PhaseChanged", "Schedule", format!("{phase:?}"));
        ctx.platform.record(&ObjectKey::of(c), note).await;
    }
    let mut next = match phase {
        Phase::Scheduled => scheduled(p, &mut st).await?,
        Phase::Prewarming | Phase::Active => commanding(p, &mut st, &pause).await?,
        Phase::Ended => ended(p, &mut st, &pause).await?,
    };
    if next.0.is_none() && c.spec.schedule.recurrence.is_some() {
        // A recurring campaign whose restore is done is Scheduled for the next occurrence
        // from its next reconcile on (which then sleeps until that one's prewarm).
        next = Next(Some(std::time::Duration::from_secs(1)));
    }
    summary_conditions(c, &mut st, phase, now);
    let mut conditions = Conditions::of(c, &mut st.conditions, now);
    if let Some(s) = prelude::publish(ctx, &ObjectKey::of(c), &mut conditions, now).await? {
        conditions.set(
            status::CONFIG_PUBLISHED,
            true,
            "Published",
            prelude::applied(&s),
        );
        st.published_version = i64::try_from(s.published.version).ok();
        st.applied_by_replicas = i32::try_from(s.applied_by).ok();
    }
    c.save(ctx, &st, now).await?;
    Ok(next)
}

/// The phase at `now`, with the window and target it is shown with. Between two occurrences
/// of a recurrence the last one's restore finishes first (Ended, not Scheduled).
fn enter_phase(c: &Campaign, st: &mut CampaignStatus, now: DateTime<Utc>) -> Phase {
    let mut phase = phase_at(&c.spec.schedule, now);
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
    phase
}

/// Before prewarming nothing is changed, but a missing target is reported already.
async fn scheduled<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus) -> Result<Next, Error> {
    let Pass { c, ctx, now, .. } = *p;
    if read_target(c, ctx).await?.is_none() {
        return Ok(target_missing(p, st).await);
    }
    let starts = st
        .window
        .map_or_else(|| "?".to_owned(), |w| w.starts_at.to_rfc3339());
    let msg = format!(
        "prewarming starts {} before {starts}",
        c.spec.schedule.prewarm
    );
    p.conditions(st).set(status::READY, true, "Scheduled", msg);
    Ok(Next(next_wake(&c.spec.schedule, Phase::Scheduled, now)))
}

/// Prewarming/Active: refuse a contested target, report a missing one, hold a paused one,
/// else command.
async fn commanding<P: Platform>(
    p: &Pass<'_, P>,
    st: &mut CampaignStatus,
    pause: &Pause,
) -> Result<Next, Error> {
    let Pass { c, ctx, now, .. } = *p;
    let phase = st.phase.unwrap_or(Phase::Active);
    let competitors = ctx
        .platform
        .competitors(c)
        .await
        .map_err(Error::CheckConflicts)?;
    if !competitors.is_empty() {
        contested(p, st, &competitors).await;
        return Ok(Next(next_wake(&c.spec.schedule, phase, now)));
    }
    ctx.metrics.conflict(&key_of(c), false);
    p.conditions(st)
        .set(status::CONFLICT, false, "NoConflict", "");
    let Some(current) = read_target(c, ctx).await? else {
        return Ok(target_missing(p, st).await);
    };
    if pause.is_paused() {
        hold(p, st, current, pause).await?;
        let msg = status::message_of(&st.conditions, status::PAUSED).to_owned();
        p.conditions(st).set(status::READY, true, "Paused", msg);
        return Ok(Next(next_wake(&c.spec.schedule, phase, now)));
    }
    command(p, st, current).await?;
    let msg = format!("{phase:?}");
    p.conditions(st).set(status::READY, true, "Commanding", msg);
    Ok(Next(next_wake(&c.spec.schedule, phase, now)))
}

/// Two controllers writing one replica count fight; refuse rather than flap.
async fn contested<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus, competitors: &[String]) {
    let Pass { c, ctx, old, .. } = *p;
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
    let mut conditions = p.conditions(st);
    conditions.set(status::CONFLICT, true, "TargetContested", msg.clone());
    conditions.set(status::READY, false, "Conflict", msg);
}

/// `Paused` from the annotations ([`pause::of`]); an unreadable one also gets a Warning once.
async fn paused_condition<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus, pause: &Pause) {
    let Pass { c, ctx, old, .. } = *p;
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
    p.conditions(st).set(status::PAUSED, on, reason, msg);
}

/// `Active` (the campaign is scaling its target now) and `Fallback` (it runs on
/// fallbackReplicas because metrics are unavailable), for the printer columns.
fn summary_conditions(c: &Campaign, st: &mut CampaignStatus, phase: Phase, now: DateTime<Utc>) {
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
    Conditions::of(c, &mut st.conditions, now).set(status::ACTIVE, commanding, reason, msg);
    let fallback = st.fallback_active;
    let (reason, msg) = if fallback {
        (
            "MetricsUnavailable",
            "running on the fallback replica count",
        )
    } else {
        ("SignalsRead", "")
    };
    Conditions::of(c, &mut st.conditions, now).set(status::FALLBACK, fallback, reason, msg);
}
