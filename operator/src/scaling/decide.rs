//! The decision pipeline, in HPA's order: recommend per signal → take the largest → panic
//! detection → stabilization windows → step policies → min/max clamp.

use super::{Decision, History, Input, Latency, Limit, Millis, Policy};

/// One signal's opinion: replicas and a sentence saying why.
struct Recommendation {
    replicas: u32,
    why: String,
}

fn ceil_u32(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x.ceil() as u32
    }
}

/// Within the tolerance band the signal says "stay": HPA's rule, which stops flapping on noise.
fn within_tolerance(ratio: f64, tolerance: f64) -> bool {
    (ratio - 1.0).abs() <= tolerance
}

fn queue_recommendation(p: &Policy, current: u32, waiting: u64) -> Recommendation {
    let wpr = p.waiting_per_replica as f64;
    let ratio = waiting as f64 / (f64::from(current) * wpr);
    if current > 0 && within_tolerance(ratio, p.tolerance) {
        return Recommendation {
            replicas: current,
            why: format!(
                "queue depth {waiting} within tolerance of {} per replica",
                p.waiting_per_replica
            ),
        };
    }
    let replicas = ceil_u32(waiting as f64 / wpr);
    Recommendation {
        replicas,
        why: format!(
            "queue depth {waiting} / {} per replica = {replicas}",
            p.waiting_per_replica
        ),
    }
}

/// Latency may hold the current size and may add replicas, but only up to `latency_max` (or
/// what the queue already justifies): slowness with a short queue usually comes from a
/// saturated database, where more pods make it worse.
fn latency_recommendation(p: &Policy, current: u32, p95_ms: f64, queue: u32) -> Recommendation {
    let ratio = p95_ms / p.p95_target_ms;
    if within_tolerance(ratio, p.tolerance) {
        return Recommendation {
            replicas: current,
            why: format!(
                "p95 {p95_ms:.0}ms within tolerance of {:.0}ms",
                p.p95_target_ms
            ),
        };
    }
    let raw = ceil_u32(f64::from(current) * ratio);
    let cap = p.latency_max.max(queue);
    if raw > current && raw > cap {
        let replicas = cap.max(current);
        return Recommendation {
            replicas,
            why: format!(
                "p95 {p95_ms:.0}ms vs {:.0}ms target wants {raw}, latency-only cap {replicas}",
                p.p95_target_ms
            ),
        };
    }
    Recommendation {
        replicas: raw,
        why: format!(
            "p95 {p95_ms:.0}ms vs {:.0}ms target = {raw}",
            p.p95_target_ms
        ),
    }
}

/// Decides the replica count. Pure apart from `history`, which the caller keeps per campaign
/// and must update with [`History::record_change`] once a change is applied.
pub fn decide(p: &Policy, input: &Input, history: &mut History) -> Decision {
    let Input {
        now,
        current,
        signals,
    } = *input;

    // 1. One recommendation per signal, then the largest (HPA takes the max over metrics).
    let queue = signals.waiting.map(|w| queue_recommendation(p, current, w));
    let queue_replicas = queue.as_ref().map_or(0, |q| q.replicas);
    let latency = match signals.latency {
        Latency::P95Ms(ms) => Some(latency_recommendation(p, current, ms, queue_replicas)),
        Latency::Idle | Latency::Unavailable => None,
    };
    let triggers = super::triggers::recommend(p.tolerance, current, &signals.triggers)
        .map(|(replicas, why)| Recommendation { replicas, why });
    let missing = signals.waiting.is_none()
        || signals.latency == Latency::Unavailable
        || signals.triggers.any_unavailable();
    let best = [queue, latency, triggers]
        .into_iter()
        .flatten()
        .max_by_key(|r| r.replicas);
    let fallback = best.is_none() && missing;
    let (raw, reason) = match best {
        // With part of the picture missing, never shrink on what is left (HPA's rule).
        Some(r) if missing && r.replicas < current => (
            current,
            format!("{}; holding {current}: a signal is unavailable", r.why),
        ),
        Some(r) => (r.replicas, r.why),
        None if fallback => {
            let fb = p.fallback.unwrap_or(current);
            (fb, format!("metrics unavailable: fallback {fb}"))
        }
        None => (current, "no signal: holding".to_owned()),
    };

    bound(p, now, current, (raw, reason), fallback, history)
}

/// Steps a campaign that has ended toward `floor` (its pre-campaign replica count): `floor`
/// is the only recommendation, and the campaign's own limits — panic hold, scale-down
/// stabilization window, scale-down step — shape the move, so a line still draining after
/// `endsAt` loses its pods as gradually as during the campaign. Never below `floor`; below
/// it (someone scaled down by hand) it goes back up to `floor` at once.
pub fn step_down(
    p: &Policy,
    now: Millis,
    current: u32,
    floor: u32,
    history: &mut History,
) -> Decision {
    let policy = Policy {
        min: floor,
        max: current.max(floor),
        ..p.clone()
    };
    let why = format!("campaign ended: back to the pre-campaign {floor}");
    bound(&policy, now, current, (floor, why), false, history)
}

/// Stages 2–5 of the decision, from the raw recommendation to the replica count.
fn bound(
    p: &Policy,
    now: Millis,
    current: u32,
    (raw, mut reason): (u32, String),
    fallback: bool,
    history: &mut History,
) -> Decision {
    // 2. Panic: a recommendation at `threshold` × current is a burst; hold no scale-down until
    //    a stable window passes without one.
    if !fallback && raw > current && f64::from(raw) >= p.panic_threshold * f64::from(current.max(1))
    {
        history.last_burst = Some(now);
    }
    let panic = history
        .last_burst
        .is_some_and(|t| now.saturating_sub(t) < p.panic_hold_ms());

    let (mut desired, mut limit) = stabilize(p, now, current, raw, history);
    if panic && desired < current {
        desired = current;
        limit = Limit::Panic;
    }

    if let Some(stepped) = step_limit(p, now, current, desired, history) {
        desired = stepped.0;
        limit = stepped.1;
    }

    // 5. min/max last, so prewarm reaches minReplicas at once whatever the step policies say.
    if desired < p.min {
        desired = p.min;
        limit = Limit::Min;
    } else if desired > p.max {
        desired = p.max;
        limit = Limit::Max;
    }

    if let Some(why) = limit_reason(limit) {
        reason.push_str("; ");
        reason.push_str(why);
    }
    if panic {
        reason.push_str("; panic mode");
    }
    Decision {
        desired,
        recommendation: raw,
        limit,
        panic,
        fallback,
        reason,
    }
}

/// 3. Stabilization: the lowest recommendation of the up window and the highest of the
///    down window bound the move, so a brief dip or spike does not move the Deployment.
fn stabilize(
    p: &Policy,
    now: Millis,
    current: u32,
    raw: u32,
    history: &mut History,
) -> (u32, Limit) {
    let keep = p.up.stabilization_ms.max(p.down.stabilization_ms);
    history
        .recommendations
        .retain(|(t, _)| now.saturating_sub(*t) <= keep);
    history.recommendations.push_back((now, raw));
    let in_window = |ms: u64| {
        history
            .recommendations
            .iter()
            .filter(move |(t, _)| now.saturating_sub(*t) <= ms)
    };
    let up_rec = in_window(p.up.stabilization_ms)
        .map(|(_, r)| *r)
        .min()
        .unwrap_or(raw);
    let down_rec = in_window(p.down.stabilization_ms)
        .map(|(_, r)| *r)
        .max()
        .unwrap_or(raw);
    // up_rec <= raw <= down_rec, so this moves toward raw only as far as both windows agree.
    let mut desired = current;
    if desired < up_rec {
        desired = up_rec;
    }
    if desired > down_rec {
        desired = down_rec;
    }
    let limit = if raw > current && desired < raw {
        Limit::UpStabilization
    } else if raw < current && desired > raw {
        Limit::DownStabilization
    } else {
        Limit::None
    };
    (desired, limit)
}

/// 4. Step policies over the period: the larger of `pods` and `percent` % of the count at
///    the period's start (HPA `selectPolicy: Max`). `Some` when they cut the move short.
fn step_limit(
    p: &Policy,
    now: Millis,
    current: u32,
    mut desired: u32,
    history: &mut History,
) -> Option<(u32, Limit)> {
    let mut limit = None;
    let keep = p.up.period_ms.max(p.down.period_ms);
    history
        .changes
        .retain(|(t, _)| now.saturating_sub(*t) < keep);
    if desired > current {
        let start = period_start(history, now, current, p.up.period_ms);
        let by_pct = ceil_u32(start as f64 * (100.0 + f64::from(p.up.percent)) / 100.0);
        let up_limit = (start.saturating_add(u64::from(p.up.pods)) as f64).max(f64::from(by_pct));
        let up_limit = ceil_u32(up_limit).max(current);
        if desired > up_limit {
            desired = up_limit;
            limit = Some(Limit::UpStep);
        }
    } else if desired < current {
        let start = period_start(history, now, current, p.down.period_ms);
        let by_pods = start.saturating_sub(u64::from(p.down.pods));
        let by_pct = (start as f64 * f64::from(100u32.saturating_sub(p.down.percent)) / 100.0)
            .floor() as u64;
        let down_limit = u32::try_from(by_pods.min(by_pct))
            .unwrap_or(u32::MAX)
            .min(current);
        if desired < down_limit {
            desired = down_limit;
            limit = Some(Limit::DownStep);
        }
    }
    limit.map(|l| (desired, l))
}

/// Replicas at the start of the period: the current count minus this decision's own changes
/// inside it.
fn period_start(history: &History, now: Millis, current: u32, period_ms: u64) -> u64 {
    let delta: i64 = history
        .changes
        .iter()
        .filter(|(t, _)| now.saturating_sub(*t) < period_ms)
        .map(|(_, d)| *d)
        .sum();
    u64::try_from(i64::from(current) - delta).unwrap_or(0)
}

fn limit_reason(limit: Limit) -> Option<&'static str> {
    Some(match limit {
        Limit::None => return None,
        Limit::UpStabilization => "held by scale-up stabilization",
        Limit::DownStabilization => "held by scale-down stabilization",
        Limit::Panic => "no scale-down while panicking",
        Limit::UpStep => "limited by scale-up step",
        Limit::DownStep => "limited by scale-down step",
        Limit::Min => "raised to minReplicas",
        Limit::Max => "capped at maxReplicas",
    })
}
