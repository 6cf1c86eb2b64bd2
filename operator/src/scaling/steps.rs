//! Stage 4 of the decision: HPA step policies. Each policy limits the change within its own
//! period, measured from the replica count at that period's start (the current count minus
//! the changes applied inside it); `selectPolicy` picks the largest change (Max), the
//! smallest (Min) or none (Disabled).

use super::{History, Limit, Millis, Rules, Select, StepKind, StepPolicy};

fn ceil_u64(x: f64) -> u64 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= u64::MAX as f64 {
        u64::MAX
    } else {
        x.ceil() as u64
    }
}

/// Replicas at the start of `period_ms` before `now`.
fn period_start(history: &History, now: Millis, current: u32, period_ms: u64) -> u64 {
    u64::try_from(i64::from(current) - history.changed_within(now, period_ms)).unwrap_or(0)
}

/// Highest count one scale-up policy allows.
fn up_bound(p: &StepPolicy, start: u64) -> u64 {
    match p.kind {
        StepKind::Pods => start.saturating_add(u64::from(p.value)),
        StepKind::Percent => ceil_u64(start as f64 * (100.0 + f64::from(p.value)) / 100.0),
    }
}

/// Lowest count one scale-down policy allows.
fn down_bound(p: &StepPolicy, start: u64) -> u64 {
    match p.kind {
        StepKind::Pods => start.saturating_sub(u64::from(p.value)),
        StepKind::Percent => {
            (start as f64 * f64::from(100u32.saturating_sub(p.value)) / 100.0).floor() as u64
        }
    }
}

fn to_u32(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// The furthest `rules` let the count move from `current` toward `desired` now; `Some` with
/// the limit when that cuts the move short.
pub(super) fn step_limit(
    up: &Rules,
    down: &Rules,
    now: Millis,
    current: u32,
    desired: u32,
    history: &History,
) -> Option<(u32, Limit)> {
    if desired > current {
        let bounds = up
            .policies
            .iter()
            .map(|p| up_bound(p, period_start(history, now, current, p.period_ms)));
        let bound = match up.select {
            Select::Disabled => return Some((current, Limit::Disabled)),
            Select::Max => bounds.max(),
            Select::Min => bounds.min(),
        };
        let bound = bound.map_or(u32::MAX, to_u32).max(current);
        (desired > bound).then_some((bound, Limit::UpStep))
    } else if desired < current {
        let bounds = down
            .policies
            .iter()
            .map(|p| down_bound(p, period_start(history, now, current, p.period_ms)));
        let bound = match down.select {
            Select::Disabled => return Some((current, Limit::Disabled)),
            // The largest change down is the lowest bound.
            Select::Max => bounds.min(),
            Select::Min => bounds.max(),
        };
        let bound = bound.map_or(0, to_u32).min(current);
        (desired < bound).then_some((bound, Limit::DownStep))
    } else {
        None
    }
}
