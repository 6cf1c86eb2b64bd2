//! Campaign phases from the schedule: Scheduled → Prewarming → Active → Ended. Pure; the
//! clock is an argument.

use std::time::Duration;

use chrono::{DateTime, Utc};
use floodgate_crds::v1alpha1::{Phase, Schedule, Window};

use crate::window::{prewarm, window_at};

/// How often a campaign that commands the Deployment is reconciled.
pub const ACTIVE_RESYNC: Duration = Duration::from_secs(2);

/// The phase at `now` in the schedule's window in effect ([`window_at`]). A schedule that has
/// none (refused by validation before any use) is Scheduled: nothing is changed.
pub fn phase_at(schedule: &Schedule, now: DateTime<Utc>) -> Phase {
    match window_at(schedule, now) {
        Ok(w) => phase_in(&w, prewarm(schedule), now),
        Err(_) => Phase::Scheduled,
    }
}

/// The phase at `now` within one window.
pub fn phase_in(w: &Window, prewarm: chrono::Duration, now: DateTime<Utc>) -> Phase {
    let prewarm_from = w
        .starts_at
        .checked_sub_signed(prewarm)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    if now >= w.ends_at {
        Phase::Ended
    } else if now >= w.starts_at {
        Phase::Active
    } else if now >= prewarm_from {
        Phase::Prewarming
    } else {
        Phase::Scheduled
    }
}

/// True while the campaign owns the replica count and the Redis settings.
pub fn commands_resources(phase: Phase) -> bool {
    matches!(phase, Phase::Prewarming | Phase::Active)
}

/// When to look again: every 2 s while commanding; a Scheduled campaign wakes when
/// prewarming starts; an Ended one only on change (a recurring one when the next
/// occurrence's prewarm starts).
pub fn next_wake(schedule: &Schedule, phase: Phase, now: DateTime<Utc>) -> Option<Duration> {
    match phase {
        Phase::Prewarming | Phase::Active => Some(ACTIVE_RESYNC),
        Phase::Ended if schedule.recurrence.is_none() => None,
        Phase::Scheduled | Phase::Ended => {
            let w = window_at(schedule, now).ok()?;
            let at = w.starts_at - prewarm(schedule);
            Some(
                (at - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_secs(1)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floodgate_crds::Dur;

    fn schedule() -> Schedule {
        Schedule {
            starts_at: Some("2026-12-24T10:00:00Z".parse().expect("time")),
            ends_at: Some("2026-12-24T12:00:00Z".parse().expect("time")),
            recurrence: None,
            prewarm: Dur::from_secs(900),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    #[test]
    fn phases_follow_the_schedule() {
        let s = schedule();
        for (now, phase) in [
            ("2026-12-24T09:44:59Z", Phase::Scheduled),
            ("2026-12-24T09:45:00Z", Phase::Prewarming),
            ("2026-12-24T09:59:59Z", Phase::Prewarming),
            ("2026-12-24T10:00:00Z", Phase::Active),
            ("2026-12-24T11:59:59Z", Phase::Active),
            ("2026-12-24T12:00:00Z", Phase::Ended),
        ] {
            assert_eq!(phase_at(&s, at(now)), phase, "{now}");
        }
    }

    #[test]
    fn scheduled_campaign_wakes_when_prewarm_starts() {
        let s = schedule();
        let now = at("2026-12-24T09:00:00Z");
        assert_eq!(
            next_wake(&s, Phase::Scheduled, now),
            Some(Duration::from_secs(45 * 60))
        );
        assert_eq!(next_wake(&s, Phase::Active, now), Some(ACTIVE_RESYNC));
        assert_eq!(next_wake(&s, Phase::Ended, now), None);
    }

    #[test]
    fn a_recurring_window_prewarms_in_local_time() {
        // Fridays 18:00 Europe/Berlin, two hours, 15 minutes of prewarm: Friday 2026-12-04
        // 18:00 CET = 17:00 UTC (the window itself: `window::tests`).
        let s = Schedule {
            starts_at: None,
            ends_at: None,
            recurrence: Some(floodgate_crds::v1alpha1::Recurrence {
                cron: "0 18 * * FRI".into(),
                timezone: "Europe/Berlin".into(),
                duration: Dur::from_secs(7200),
            }),
            prewarm: Dur::from_secs(900),
        };
        assert_eq!(phase_at(&s, at("2026-12-04T16:44:59Z")), Phase::Scheduled);
        assert_eq!(phase_at(&s, at("2026-12-04T16:45:00Z")), Phase::Prewarming);
        assert_eq!(phase_at(&s, at("2026-12-04T17:00:00Z")), Phase::Active);
    }
}
