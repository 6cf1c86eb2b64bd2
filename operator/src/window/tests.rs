use chrono::{TimeZone, Timelike};
use floodgate_crds::Dur;
use proptest::prelude::*;

use super::*;

fn recurring(cron: &str, tz: &str, duration_s: u64, prewarm_s: u64) -> Schedule {
    Schedule {
        starts_at: None,
        ends_at: None,
        recurrence: Some(Recurrence {
            cron: cron.into(),
            timezone: tz.into(),
            duration: Dur::from_secs(duration_s),
        }),
        prewarm: Dur::from_secs(prewarm_s),
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

#[test]
fn a_weekly_drop_in_berlin_is_found_in_local_time() {
    // Fridays 18:00 Europe/Berlin, two hours, 15 minutes of prewarm.
    let s = recurring("0 18 * * FRI", "Europe/Berlin", 7200, 900);
    // Wednesday 2026-12-02: the next is Friday 2026-12-04 18:00 CET = 17:00 UTC.
    let w = window_at(&s, utc("2026-12-02T12:00:00Z")).expect("window");
    assert_eq!(w.starts_at, utc("2026-12-04T17:00:00Z"));
    assert_eq!(w.ends_at, utc("2026-12-04T19:00:00Z"));
    // the phases of this window: `phase::tests::a_recurring_window_prewarms_in_local_time`
    // In the window the window in progress is shown; after it, next week's.
    let during = window_at(&s, utc("2026-12-04T18:59:59Z")).expect("window");
    assert_eq!(during.starts_at, utc("2026-12-04T17:00:00Z"));
    let after = window_at(&s, utc("2026-12-04T19:00:00Z")).expect("window");
    assert_eq!(after.starts_at, utc("2026-12-11T17:00:00Z"));
    // In summer the same wall-clock time is 16:00 UTC.
    let summer = window_at(&s, utc("2026-07-01T00:00:00Z")).expect("window");
    assert_eq!(summer.starts_at, utc("2026-07-03T16:00:00Z"));
}

#[test]
fn a_start_in_the_spring_gap_opens_at_the_first_valid_time() {
    // 2026-03-29 02:30 does not exist in Berlin (02:00 -> 03:00): it opens at 03:00 CEST.
    let s = recurring("30 2 * * *", "Europe/Berlin", 3600, 0);
    let w = window_at(&s, utc("2026-03-28T23:00:00Z")).expect("window");
    assert_eq!(w.starts_at, utc("2026-03-29T01:00:00Z"));
    assert_eq!(
        w.ends_at,
        utc("2026-03-29T02:00:00Z"),
        "duration is absolute time"
    );
    let next = window_at(&s, w.ends_at).expect("window");
    assert_eq!(next.starts_at, utc("2026-03-30T00:30:00Z"));
}

#[test]
fn a_start_in_the_repeated_autumn_hour_opens_once() {
    // 2026-11-01 01:30 happens twice in New York (EDT 05:30Z, then EST 06:30Z): one window.
    let s = recurring("30 1 * * *", "America/New_York", 600, 0);
    let first = window_at(&s, utc("2026-11-01T04:00:00Z")).expect("window");
    assert_eq!(first.starts_at, utc("2026-11-01T05:30:00Z"));
    // During the second 01:30 the next window is the next day's, not a second one.
    let later = window_at(&s, utc("2026-11-01T06:20:00Z")).expect("window");
    assert_eq!(later.starts_at, utc("2026-11-02T06:30:00Z"));
}

#[test]
fn bad_recurrences_are_named_precisely() {
    let bad_cron = recurring("every friday", "UTC", 60, 0);
    let e = window_at(&bad_cron, utc("2026-01-01T00:00:00Z")).expect_err("bad cron");
    assert!(
        e.contains("schedule.recurrence.cron \"every friday\""),
        "{e}"
    );
    let bad_tz = recurring("0 18 * * FRI", "Mars/Olympus", 60, 0);
    let e = window_at(&bad_tz, utc("2026-01-01T00:00:00Z")).expect_err("bad tz");
    assert!(
        e.contains("\"Mars/Olympus\" is not an IANA timezone"),
        "{e}"
    );
    let never = recurring("0 0 30 2 *", "UTC", 60, 0);
    let e = window_at(&never, utc("2026-01-01T00:00:00Z")).expect_err("never");
    assert!(e.contains("names no time"), "{e}");
}

const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "UTC",
];

fn any_now() -> impl Strategy<Value = DateTime<Utc>> {
    // 2026-2027: both DST changes of each zone, twice.
    (1_767_225_600i64..1_830_297_600)
        .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap_or_default())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The window is the one in progress or the next one, it lasts `duration`, and no other
    /// occurrence starts between the end of the last window and its start.
    #[test]
    fn the_window_is_in_progress_or_next_and_none_is_skipped(
        zone in 0usize..4, hour in 0u32..24, minute in (0u32..4).prop_map(|q| q * 15),
        duration_min in 1u64..300, now in any_now(),
    ) {
        let s = recurring(&format!("{minute} {hour} * * *"), ZONES[zone], duration_min * 60, 0);
        let p = parse(s.recurrence.as_ref().expect("recurrence")).expect("parse");
        let w = window_at(&s, now).expect("window");
        prop_assert_eq!(w.ends_at - w.starts_at, Duration::minutes(i64::try_from(duration_min).unwrap_or(0)));
        prop_assert!(w.ends_at > now, "window {w:?} already over at {now}");
        // Nothing starts in (now - duration, w.starts_at): it is the earliest unfinished one.
        let earlier = start_after(&p, now - p.duration).expect("start");
        prop_assert_eq!(earlier, w.starts_at);
        // Its local start is the cron's time, or (in a DST gap) the first valid time after it.
        let local = w.starts_at.with_timezone(&p.tz);
        let wanted = (hour, minute);
        let got = (local.hour(), local.minute());
        if got != wanted {
            let day = local.date_naive();
            let naive = day.and_hms_opt(hour, minute, 0).expect("time");
            prop_assert!(p.tz.from_local_datetime(&naive).single().is_none()
                && p.tz.from_local_datetime(&naive).earliest().is_none(),
                "{} local {got:?} is not {wanted:?} and {naive} is not in a DST gap", ZONES[zone]);
        }
    }

    /// Time moving forward never moves the window back, and consecutive windows are one
    /// occurrence apart (at most one a day for a daily cron, at least ~23 h apart).
    #[test]
    fn windows_advance_one_occurrence_at_a_time(
        zone in 0usize..4, hour in 0u32..24, now in any_now(), step_min in 1i64..180,
    ) {
        let s = recurring(&format!("0 {hour} * * *"), ZONES[zone], 3600, 600);
        let a = window_at(&s, now).expect("window");
        let b = window_at(&s, now + Duration::minutes(step_min)).expect("window");
        prop_assert!(b.starts_at >= a.starts_at);
        if b.starts_at != a.starts_at {
            let gap = b.starts_at - a.starts_at;
            prop_assert!(gap >= Duration::hours(22) && gap <= Duration::hours(26), "gap {gap}");
        }
    }
}

#[test]
fn a_one_off_schedule_is_its_own_window() {
    let s = Schedule {
        starts_at: Some(utc("2026-12-24T10:00:00Z")),
        ends_at: Some(utc("2026-12-24T12:00:00Z")),
        recurrence: None,
        prewarm: Dur::from_secs(900),
    };
    let w = window_at(&s, utc("2027-01-01T00:00:00Z")).expect("window");
    assert_eq!(w.starts_at, utc("2026-12-24T10:00:00Z"));
}
