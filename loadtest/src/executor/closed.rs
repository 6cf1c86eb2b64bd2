//! Closed model: `constant-vus` and `ramping-vus`. Each VU is a task that loops while the
//! stage plan wants it; when a ramp-down drops it, its current iteration gets
//! `gracefulRampDown` to finish before it is interrupted.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{ScenarioRun, iterate, secs};
use crate::config::Executor;
use crate::schedule::Profile;

pub(super) async fn run(sr: &Arc<ScenarioRun>) {
    let (profile, ramp_down) = match &sr.options.executor {
        Executor::ConstantVus { vus, duration } => (
            Profile::constant(*vus as f64, duration.0.as_secs_f64()),
            Duration::ZERO,
        ),
        Executor::RampingVus {
            start_vus,
            stages,
            graceful_ramp_down,
        } => (
            Profile::from_stages(*start_vus as f64, stages, 1.0),
            graceful_ramp_down.0,
        ),
        _ => return,
    };
    let profile = Arc::new(profile);
    let local = sr.segment.share(sr.options.executor.max_vus());
    sr.ctx.recorder.live.vus_max.fetch_add(local, Relaxed);
    let tasks: Vec<_> = (0..local)
        .map(|m| {
            tokio::spawn(vu_loop(
                sr.clone(),
                profile.clone(),
                sr.segment.global(m),
                ramp_down,
            ))
        })
        .collect();
    for t in tasks {
        // A panicking scenario kills only its VU; the run goes on, as with a k6 exception.
        if let Err(e) = t.await {
            tracing::warn!(error = %e, "a VU task ended abnormally");
        }
    }
}

async fn vu_loop(sr: Arc<ScenarioRun>, profile: Arc<Profile>, global: u64, ramp_down: Duration) {
    let start = sr.start();
    let end = start + sr.options.executor.duration();
    let hard_stop = sr.hard_stop();
    let mut vu = sr.new_vu(global);
    let live = &sr.ctx.recorder.live.vus;
    let mut active = false;
    loop {
        let now = Instant::now();
        if now >= end || sr.control.is_aborted() {
            break;
        }
        let t = now.saturating_duration_since(start).as_secs_f64();
        match profile.vu_starts(global, t) {
            None => break,
            Some(s) if s > t => {
                if active {
                    live.fetch_sub(1, Relaxed);
                    active = false;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until((start + secs(s)).into()) => {}
                    _ = sr.control.aborted() => break,
                }
                continue;
            }
            Some(_) => {}
        }
        if !active {
            live.fetch_add(1, Relaxed);
            active = true;
        }
        // A VU dropped by a ramp-down may finish its iteration within gracefulRampDown.
        let deadline = match profile.vu_stops(global, t) {
            Some(stop) => (start + secs(stop) + ramp_down).min(hard_stop),
            None => hard_stop,
        };
        iterate(&sr, &mut vu, now, deadline).await;
    }
    if active {
        live.fetch_sub(1, Relaxed);
    }
}
