//! Which window of a Campaign's schedule is in effect: the one-off `startsAt`/`endsAt`, or
//! for a `recurrence` the occurrence in progress (prewarm included) or else the next one.
//! Pure; the clock is an argument. Cron expressions are read in the recurrence's IANA
//! timezone with croner; a start in a DST gap opens at the first valid time after it, one in
//! a repeated hour opens once (its first instance); `duration` is absolute time.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use floodgate_crds::v1alpha1::{Recurrence, Schedule, Window};

/// How many candidate starts are tried before giving up (a cron naming a date that never
/// comes, e.g. 30 February, has none).
const MAX_CANDIDATES: usize = 8;

/// A recurrence ready to use, or why it cannot be.
pub struct Parsed {
    cron: Cron,
    tz: Tz,
    duration: Duration,
}

pub fn parse(r: &Recurrence) -> Result<Parsed, String> {
    let cron = Cron::new(&r.cron)
        .parse()
        .map_err(|e| format!("schedule.recurrence.cron {:?}: {e}", r.cron))?;
    let tz: Tz = r.timezone.parse().map_err(|_| {
        format!(
            "schedule.recurrence.timezone {:?} is not an IANA timezone (e.g. Europe/Berlin)",
            r.timezone
        )
    })?;
    let duration = Duration::milliseconds(i64::try_from(r.duration.as_millis()).unwrap_or(0));
    if duration <= Duration::zero() {
        return Err("schedule.recurrence.duration must be positive".into());
    }
    Ok(Parsed { cron, tz, duration })
}

/// The window in effect at `now` (see the module doc). `Err` names what is wrong with the
/// schedule (also what validation reports).
pub fn window_at(s: &Schedule, now: DateTime<Utc>) -> Result<Window, String> {
    match (&s.recurrence, s.starts_at, s.ends_at) {
        (Some(r), None, None) => occurrence_at(&parse(r)?, now).ok_or_else(|| {
            format!(
                "schedule.recurrence.cron {:?} names no time after {now}",
                r.cron
            )
        }),
        (None, Some(starts_at), Some(ends_at)) => Ok(Window { starts_at, ends_at }),
        _ => Err("schedule needs either startsAt and endsAt, or recurrence".into()),
    }
}

pub fn prewarm(s: &Schedule) -> Duration {
    Duration::milliseconds(i64::try_from(s.prewarm.as_millis()).unwrap_or(i64::MAX / 2))
}

/// The first occurrence whose window has not ended by `now` (it starts after now −
/// duration): the one in progress, or else the next one ([`crate::phase::phase_at`] tells
/// which, prewarm included).
pub fn occurrence_at(p: &Parsed, now: DateTime<Utc>) -> Option<Window> {
    let starts_at = start_after(p, now - p.duration)?;
    Some(Window {
        starts_at,
        ends_at: starts_at + p.duration,
    })
}

/// The first start strictly after `after`. croner walks local wall-clock time, so from the
/// second instance of a repeated hour it can answer the first instance (earlier in UTC):
/// such an answer is skipped.
pub fn start_after(p: &Parsed, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut from = after.with_timezone(&p.tz);
    for _ in 0..MAX_CANDIDATES {
        let next = p.cron.find_next_occurrence(&from, false).ok()?;
        let utc = next.with_timezone(&Utc);
        if utc > after {
            return Some(utc);
        }
        from = next;
    }
    None
}

#[cfg(test)]
mod tests;
