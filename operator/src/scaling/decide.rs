//! The decision pipeline, in HPA's order: average the signals over the KPA windows →
//! recommend per signal → take the largest (or the KEDA fallback) → panic detection →
//! stabilization windows → step policies → min/max clamp.

use floodgate_crds::v1alpha1::DEFAULT_FAILURE_THRESHOLD;

use super::{Decision, History, Input, Latency, Limit, Millis, Policy, Signals, ceil_u32, steps};

/// One signal's opinion: replicas and a sentence saying why.
struct Recommendation {
    replicas: u32,
    why: String,
}

/// Within the tolerance band the signal says "stay": HPA's rule, which stops flapping on
/// noise, with each direction's own tolerance (HPA 1.33).
fn within_tolerance(p: &Policy, ratio: f64) -> bool {
    ratio <= 1.0 + p.up.tolerance && ratio >= 1.0 - p.down.tolerance
}

fn queue_recommendation(p: &Policy, current: u32, waiting: u64) -> Recommendation {
    let wpr = p.waiting_per_replica as f64;
    let ratio = waiting as f64 / (f64::from(current) * wpr);
    if current > 0 && within_tolerance(p, ratio) {
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
    if within_tolerance(p, ratio) {
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

/// The largest per-signal recommendation, and whether a signal was missing.
struct Raw {
    best: Option<Recommendation>,
    missing: bool,
}

/// 1. One recommendation per signal, then the largest (HPA takes the max over metrics).
fn recommend(p: &Policy, current: u32, signals: &Signals) -> Raw {
    let queue = signals.waiting.map(|w| queue_recommendation(p, current, w));
    let queue_replicas = queue.as_ref().map_or(0, |q| q.replicas);
    let latency = match signals.latency {
        Latency::P95Ms(ms) => Some(latency_recommendation(p, current, ms, queue_replicas)),
        Latency::Idle | Latency::Unavailable => None,
    };
    let triggers =
        super::triggers::recommend(|r| within_tolerance(p, r), current, &signals.triggers)
            .map(|(replicas, why)| Recommendation { replicas, why });
    let missing = signals.waiting.is_none()
        || signals.latency == Latency::Unavailable
        || signals.triggers.any_unavailable();
    let best = [queue, latency, triggers]
        .into_iter()
        .flatten()
        .max_by_key(|r| r.replicas);
    Raw { best, missing }
}

/// Decides the replica count. Pure apart from `history`, which the caller keeps per campaign
/// and must update with [`History::record_change`] once a change is applied.
pub fn decide(p: &Policy, input: &Input, history: &mut History) -> Decision {
    let Input {
        now,
        current,
        signals,
    } = *input;
    // KPA: the stable window's average recommends, the panic window's detects bursts.
    history.observe(now, &signals, p.stable_window_ms.max(p.panic_window_ms));
    let stable = recommend(
        p,
        current,
        &history.average(now, p.stable_window_ms, &signals),
    );
    let burst = recommend(
        p,
        current,
        &history.average(now, p.panic_window_ms, &signals),
    )
    .best;

    let (raw, reason, failed, fallback) = stable_or_fallback(p, current, stable, history);

    // 2. Panic: a panic-window recommendation at `threshold` × current is a burst.
    let burst = burst.filter(|_| !failed).map(|b| b.replicas);
    if burst.is_some_and(|b| {
        b > current && f64::from(b) >= p.panic_threshold * f64::from(current.max(1))
    }) {
        history.last_burst = Some(now);
    }
    let panic = panicking(p, now, history);
    let (raw, reason) = match burst {
        Some(b) if panic && b > raw => (b, format!("panic window wants {b} ({reason})")),
        _ => (raw, reason),
    };
    bound(p, now, current, (raw, reason), (panic, fallback), history)
}

/// The stable window's recommendation, or — when every signal failed — a hold until
/// `failureThreshold` consecutive failed reads, then the KEDA fallback. Returns (raw,
/// reason, this read failed, fallback in force).
fn stable_or_fallback(
    p: &Policy,
    current: u32,
    stable: Raw,
    history: &mut History,
) -> (u32, String, bool, bool) {
    // KEDA: a read in which every signal failed counts toward failureThreshold.
    let failed = stable.best.is_none() && stable.missing;
    let threshold = p
        .fallback
        .map_or(DEFAULT_FAILURE_THRESHOLD.unsigned_abs(), |f| {
            f.failure_threshold
        })
        .max(1);
    history.failed_reads = if failed {
        history.failed_reads.saturating_add(1).min(threshold)
    } else {
        0
    };
    let fallback = failed && history.failed_reads >= threshold;
    let (raw, reason) = match stable.best {
        // With part of the picture missing, never shrink on what is left (HPA's rule).
        Some(r) if stable.missing && r.replicas < current => (
            current,
            format!("{}; holding {current}: a signal is unavailable", r.why),
        ),
        Some(r) => (r.replicas, r.why),
        None if fallback => {
            let fb = p.fallback.map_or(current, |f| f.target(current));
            let how = p
                .fallback
                .map_or("current".into(), |f| format!("{:?}", f.behavior));
            (
                fb,
                format!("metrics unavailable {threshold} reads in a row: fallback {fb} ({how})"),
            )
        }
        None if failed => (
            current,
            format!(
                "metrics unavailable ({}/{threshold} failed reads): holding {current}",
                history.failed_reads
            ),
        ),
        None => (current, "no signal: holding".to_owned()),
    };
    (raw, reason, failed, fallback)
}

/// Panic lasts a stable window after the last burst (Knative KPA).
fn panicking(p: &Policy, now: Millis, history: &History) -> bool {
    history
        .last_burst
        .is_some_and(|t| now.saturating_sub(t) < p.stable_window_ms)
}

/// Steps a campaign that has ended toward `floor` (its pre-campaign replica count): `floor`
/// is the only recommendation, and the campaign's own limits — panic hold, scale-down
/// stabilization window, scale-down step policies — shape the move, so a line still
/// draining after `endsAt` loses its pods as gradually as during the campaign. Never below
/// `floor`; below it (someone scaled down by hand) it goes back up to `floor` at once.
pub fn step_down(
    p: &Policy,
    now: Millis,
    current: u32,
    floor: u32,
    history: &mut History,
) -> Decision {
    // `selectPolicy: Disabled` stops scale-down during the campaign, not its end.
    let mut down = p.down.clone();
    if down.select == super::Select::Disabled {
        down.select = super::Select::Max;
    }
    let policy = Policy {
        min: floor,
        max: current.max(floor),
        down,
        ..p.clone()
    };
    let why = format!("campaign ended: back to the pre-campaign {floor}");
    let panic = panicking(p, now, history);
    bound(&policy, now, current, (floor, why), (panic, false), history)
}

/// Stages 3–5 of the decision, from the raw recommendation to the replica count.
fn bound(
    p: &Policy,
    now: Millis,
    current: u32,
    (raw, mut reason): (u32, String),
    (panic, fallback): (bool, bool),
    history: &mut History,
) -> Decision {
    let (mut desired, mut limit) = stabilize(p, now, current, raw, history);
    history.prune_changes(now, p.longest_period_ms());
    // In panic the scale-up follows the panic window at once (no up stabilization, no up
    // step policies: KPA), and nothing scales down.
    let panic_up = panic && raw > current && p.up.select != super::Select::Disabled;
    if panic_up {
        (desired, limit) = (raw, Limit::PanicUp);
    } else if panic && desired < current {
        (desired, limit) = (current, Limit::Panic);
    } else if let Some(stepped) = steps::step_limit(&p.up, &p.down, now, current, desired, history)
    {
        (desired, limit) = stepped;
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
    history.push_recommendation(now, raw, keep);
    let up_rec = history
        .recommendations_within(now, p.up.stabilization_ms)
        .min()
        .unwrap_or(raw);
    let down_rec = history
        .recommendations_within(now, p.down.stabilization_ms)
        .max()
        .unwrap_or(raw);
    // up_rec <= raw <= down_rec, so this moves toward raw only as far as both windows agree.
    let desired = current.max(up_rec).min(down_rec);
    let limit = if raw > current && desired < raw {
        Limit::UpStabilization
    } else if raw < current && desired > raw {
        Limit::DownStabilization
    } else {
        Limit::None
    };
    (desired, limit)
}

fn limit_reason(limit: Limit) -> Option<&'static str> {
    Some(match limit {
        Limit::None => return None,
        Limit::UpStabilization => "held by scale-up stabilization",
        Limit::DownStabilization => "held by scale-down stabilization",
        Limit::Panic => "no scale-down while panicking",
        Limit::UpStep => "limited by scale-up step",
        Limit::DownStep => "limited by scale-down step",
        Limit::Disabled => "selectPolicy Disabled for this direction",
        Limit::PanicUp => "panic: scaled up at once, step policies not applied",
        Limit::Min => "raised to minReplicas",
        Limit::Max => "capped at maxReplicas",
    })
}
