//! Open model: `constant-arrival-rate` and `ramping-arrival-rate`. Every iteration has an
//! absolute intended start computed from the rate integral; if the scheduler wakes late
//! it still stamps each iteration with its own intended start (so latency includes the
//! delay — no coordinated omission) and records its own lag. With no free VU and `maxVUs`
//! reached, the iteration is dropped and counted, as in k6.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{ScenarioRun, iterate, secs};
use crate::config::Executor;
use crate::schedule::Profile;
use crate::vu::Vu;

pub(super) async fn run(sr: &Arc<ScenarioRun>) {
    let (profile, pre, max) = match &sr.options.executor {
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            duration,
            pre_allocated_vus,
            max_vus,
        } => (
            Profile::constant(rate / time_unit.0.as_secs_f64(), duration.0.as_secs_f64()),
            *pre_allocated_vus,
            (*max_vus).max(*pre_allocated_vus),
        ),
        Executor::RampingArrivalRate {
            start_rate,
            time_unit,
            pre_allocated_vus,
            max_vus,
            stages,
        } => (
            Profile::from_stages(*start_rate, stages, time_unit.0.as_secs_f64()),
            *pre_allocated_vus,
            (*max_vus).max(*pre_allocated_vus),
        ),
        _ => return,
    };
    let recorder = &sr.ctx.recorder;
    let (local_pre, local_max) = (sr.segment.share(pre), sr.segment.share(max));
    let mut idle: Vec<Vu> = (0..local_pre)
        .map(|m| sr.new_vu(sr.segment.global(m)))
        .collect();
    let mut allocated = local_pre;
    recorder.live.vus_max.fetch_add(local_pre, Relaxed);
    let (back_tx, mut back_rx) = mpsc::unbounded_channel::<Vu>();
    let start = sr.start();
    let hard_stop = sr.hard_stop();
    let worker = sr.segment.index;

    for t in profile.arrivals(sr.segment) {
        let due = start + secs(t);
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due.into()) => {}
                _ = sr.control.aborted() => break,
            }
        } else if sr.control.is_aborted() {
            break;
        }
        recorder.scheduler_lag(worker, Instant::now().saturating_duration_since(due));
        while let Ok(vu) = back_rx.try_recv() {
            idle.push(vu);
        }
        let vu = match idle.pop() {
            Some(vu) => vu,
            None if allocated < local_max => {
                // Like k6, VUs beyond preAllocatedVUs are created mid-test, up to maxVUs.
                allocated += 1;
                recorder.live.vus_max.fetch_add(1, Relaxed);
                sr.new_vu(sr.segment.global(allocated - 1))
            }
            None => {
                recorder.dropped(worker);
                continue;
            }
        };
        let (sr2, back) = (sr.clone(), back_tx.clone());
        tokio::spawn(async move {
            let mut vu = vu;
            sr2.ctx.recorder.live.vus.fetch_add(1, Relaxed);
            iterate(&sr2, &mut vu, due, hard_stop).await;
            sr2.ctx.recorder.live.vus.fetch_sub(1, Relaxed);
            // The scheduler may already be gone at the very end; then the VU just retires.
            let _ = back.send(vu);
        });
    }
    drop(back_tx);
    // Wait for in-flight iterations; each one is cut off at the hard stop by itself.
    let mut home = idle.len() as u64;
    while home < allocated {
        match back_rx.recv().await {
            Some(_) => home += 1,
            None => break,
        }
    }
}
