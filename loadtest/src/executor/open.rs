//! Open model: `constant-arrival-rate` and `ramping-arrival-rate`. Every iteration has an
//! absolute intended start computed from the rate integral. A dedicated thread sleeps to
//! each start with the OS timer (tokio's timer wheel rounds to whole milliseconds, which
//! would add up to 1 ms to every latency) and hands the iteration to the runtime. Latency
//! counts from the intended start, so any delay on our side — a late thread, a busy
//! runtime — shows up in it (no coordinated omission) and in `scheduler_lag`. With no free
//! VU and `maxVUs` reached, the iteration is dropped and counted, as in k6.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{ScenarioRun, iterate, secs};
use crate::config::Executor;
use crate::schedule::Profile;
use crate::vu::Vu;

/// Longest single sleep of the scheduler thread, so an abort is noticed promptly.
const SLICE: Duration = Duration::from_millis(20);

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
    let (local_pre, local_max) = (sr.segment.share(pre), sr.segment.share(max));
    sr.ctx.recorder.live.vus_max.fetch_add(local_pre, Relaxed);
    let idle: Vec<Vu> = (0..local_pre)
        .map(|m| sr.new_vu(sr.segment.global(m)))
        .collect();
    let pool = Pool {
        idle,
        allocated: local_pre,
        max: local_max,
    };
    let (sr2, handle) = (sr.clone(), Handle::current());
    let Ok((pool, mut back)) =
        tokio::task::spawn_blocking(move || schedule(&sr2, &profile, pool, handle)).await
    else {
        tracing::error!(scenario = %sr.name, "the arrival scheduler thread died");
        return;
    };
    // Wait for in-flight iterations; each one is cut off at the hard stop by itself.
    let mut home = pool.idle.len() as u64;
    while home < pool.allocated {
        match back.recv().await {
            Some(_) => home += 1,
            None => break,
        }
    }
}

struct Pool {
    idle: Vec<Vu>,
    allocated: u64,
    max: u64,
}

/// The scheduler loop, on its own thread. Returns the pool (VUs idle at the end) and the
/// channel on which the in-flight VUs come home.
fn schedule(
    sr: &Arc<ScenarioRun>,
    profile: &Profile,
    mut pool: Pool,
    rt: Handle,
) -> (Pool, mpsc::UnboundedReceiver<Vu>) {
    let start = sr.start();
    let hard_stop = sr.hard_stop();
    let recorder = &sr.ctx.recorder;
    let worker = sr.segment.index;
    let (home_tx, mut home_rx) = mpsc::unbounded_channel::<Vu>();
    'arrivals: for t in profile.arrivals(sr.segment) {
        let due = start + secs(t);
        loop {
            if sr.control.is_aborted() {
                break 'arrivals;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(SLICE));
        }
        while let Ok(vu) = home_rx.try_recv() {
            pool.idle.push(vu);
        }
        let vu = match pool.idle.pop() {
            Some(vu) => vu,
            None if pool.allocated < pool.max => {
                // Like k6, VUs beyond preAllocatedVUs are created mid-test, up to maxVUs.
                pool.allocated += 1;
                recorder.live.vus_max.fetch_add(1, Relaxed);
                sr.new_vu(sr.segment.global(pool.allocated - 1))
            }
            None => {
                recorder.dropped(worker);
                continue;
            }
        };
        let (sr2, back) = (sr.clone(), home_tx.clone());
        rt.spawn(async move {
            let mut vu = vu;
            let rec = &sr2.ctx.recorder;
            // Lag as the iteration really starts: scheduler thread and runtime together.
            rec.scheduler_lag(vu.id, Instant::now().saturating_duration_since(due));
            rec.live.vus.fetch_add(1, Relaxed);
            iterate(&sr2, &mut vu, due, hard_stop).await;
            rec.live.vus.fetch_sub(1, Relaxed);
            // After the run the receiver may be gone; then the VU simply retires.
            let _ = back.send(vu);
        });
    }
    while let Ok(vu) = home_rx.try_recv() {
        pool.idle.push(vu);
    }
    (pool, home_rx)
}
