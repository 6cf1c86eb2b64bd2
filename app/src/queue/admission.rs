//! The admission loop. Every replica runs one task per known queue (configured in the runtime
//! config, or live in the registry of joined queues, see [`super::registry`]) that takes or
//! renews that queue's Redis lease every [`TICK`]: the holder admits (at `admitPerMinute`,
//! while active sessions are below `maxActiveUsers`, not while paused or before `opensAt`),
//! the others only refresh their gauges from Redis so every replica exports the queue-wide
//! counts. Settings are read from the runtime config on every tick, so changes apply within
//! one tick of arriving.
//!
//! One queue never holds up another: each queue has its own task, a tick that takes longer
//! than [`TICK_TIMEOUT`] is abandoned (and retried at the next tick), and ticks of different
//! queues run side by side, at most [`MAX_TICKS_IN_FLIGHT`] at once (a fair semaphore). So a
//! queue is ticked every `TICK` plus its own tick's duration, and waits for other queues only
//! when `MAX_TICKS_IN_FLIGHT` ticks are already running: at most `TICK_TIMEOUT` per
//! `MAX_TICKS_IN_FLIGHT` queues queued ahead of it (docs/security.md, "Waiting rooms exist
//! only when configured"). A queue that is neither configured nor live in the registry any
//! more has its task stopped, its lease given up and its metric series removed.
//!
//! Metric series are labelled with configured queue ids only, never with an id a client made
//! up or a queue that is only referenced by goods or a concert.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use floodgate_crds::runtime::{QueueSettings, Queueing};
use tokio::{
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use super::{
    lease::Lease,
    registry,
    rules::{self, Allowance, Phase},
    store::{self, AdmitArgs, Counts, QueueKeys},
};
use crate::{
    platform::{metrics::QueueLabels, redis::Redis},
    state::AppState,
};

pub const TICK: Duration = Duration::from_millis(200);
/// A tick still running after this is abandoned; below the lease TTL, so the holder keeps its
/// lease across a timed-out tick.
pub const TICK_TIMEOUT: Duration = Duration::from_secs(1);
/// Ticks of different queues running at once, at most.
pub const MAX_TICKS_IN_FLIGHT: usize = 32;
/// How often the set of queues is re-read.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// Window over which the admission rate is measured for ETAs.
const RATE_WINDOW: Duration = Duration::from_secs(10);

struct QueueLoop {
    /// Outside the Redis breaker: the loop retries every tick on its own.
    redis: Redis,
    keys: QueueKeys,
    lease: Lease,
    allowance: Allowance,
    last_tick: Option<Instant>,
    recent: VecDeque<(Instant, u64)>,
    shuffle_checked: bool,
}

impl QueueLoop {
    fn new(state: &AppState, id: &str, holder: &str) -> Self {
        Self {
            redis: state.redis.unguarded(),
            keys: QueueKeys::new(&state.redis, id),
            lease: Lease::new(&state.redis, &store::lease_key(id), holder),
            allowance: Allowance::default(),
            last_tick: None,
            recent: VecDeque::new(),
            shuffle_checked: false,
        }
    }

    fn measured_rate(&mut self, now: Instant) -> f64 {
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        let Some((first, _)) = self.recent.front() else {
            return 0.0;
        };
        let span = now.duration_since(*first).as_secs_f64().max(1.0);
        self.recent.iter().map(|(_, n)| *n).sum::<u64>() as f64 / span
    }
}

/// One queue's task: its stop signal and handle.
struct QueueTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let holder = format!(
        "{}:{}",
        state.settings.replica_id(),
        uuid::Uuid::new_v4().simple()
    );
    let permits = Arc::new(Semaphore::new(MAX_TICKS_IN_FLIGHT));
    let mut tasks: HashMap<String, QueueTask> = HashMap::new();
    // a background loop with its own retry: outside the Redis breaker
    let redis = state.redis.unguarded();
    store::drop_legacy_registry(&redis).await;
    loop {
        let mut ids: HashSet<String> = state.runtime.get().queues.keys().cloned().collect();
        match store::registered(&redis, Utc::now().timestamp_millis()).await {
            Ok(live) => ids.extend(live),
            Err(e) => {
                // keep what runs: a registry read failure must not stop admission
                tracing::debug!(error = %e, "queue registry unavailable");
                ids.extend(tasks.keys().cloned());
            }
        }
        tasks.retain(|id, t| {
            let keep = ids.contains(id) && !t.handle.is_finished();
            if !keep {
                t.stop.send_replace(true);
            }
            keep
        });
        for id in ids {
            tasks.entry(id).or_insert_with_key(|id| {
                let (stop, stopped) = watch::channel(false);
                let handle = tokio::spawn(queue_loop(
                    state.clone(),
                    id.clone(),
                    holder.clone(),
                    permits.clone(),
                    stopped,
                ));
                QueueTask { stop, handle }
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(DISCOVER_EVERY) => {}
            _ = shutdown.changed() => break,
        }
    }
    for t in tasks.values() {
        t.stop.send_replace(true);
    }
    for (_, t) in tasks {
        let _ = tokio::time::timeout(TICK_TIMEOUT * 2, t.handle).await;
    }
}

/// Ticks one queue every [`TICK`] until stopped; then gives up its lease and metric series.
async fn queue_loop(
    state: AppState,
    id: String,
    holder: String,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ql = QueueLoop::new(&state, &id, &holder);
    loop {
        {
            let Ok(_permit) = permits.acquire().await else {
                break;
            };
            if tokio::time::timeout(TICK_TIMEOUT, tick(&state, &id, &mut ql))
                .await
                .is_err()
            {
                tracing::warn!(queue = %id, timeout = ?TICK_TIMEOUT, "admission tick abandoned; retrying next tick");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => break,
        }
    }
    ql.lease.release(&state.redis).await;
    forget_metrics(&state, &id);
}

/// The queue's labels, when its id may be a metric label (it is configured).
fn labels(state: &AppState, id: &str) -> Option<QueueLabels> {
    registry::is_configured(state, id).then(|| QueueLabels {
        queue: id.to_owned(),
    })
}

/// Removes the queue's series (it left the config, or its task stopped).
fn forget_metrics(state: &AppState, id: &str) {
    let labels = QueueLabels {
        queue: id.to_owned(),
    };
    let m = &state.metrics;
    m.queue_waiting.remove(&labels);
    m.queue_active.remove(&labels);
    m.queue_admitted.remove(&labels);
    m.queue_abandoned.remove(&labels);
    m.queue_admission_rate.remove(&labels);
}

async fn tick(state: &AppState, id: &str, ql: &mut QueueLoop) {
    let q = state.runtime.get().queue(id);
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let labels = labels(state, id);
    if labels.is_none() {
        forget_metrics(state, id);
    }
    let instant = Instant::now();
    let elapsed = ql
        .last_tick
        .map_or(0.0, |t| instant.duration_since(t).as_secs_f64());
    ql.last_tick = Some(instant);

    if !ql.lease.hold(&state.redis).await {
        follow(state, id, ql, labels.as_ref(), now_ms).await;
        return;
    }
    if !ql.shuffle_checked
        && q.queueing == Queueing::Random
        && q.opens_at.is_some()
        && rules::phase(&q, now) != Phase::NotOpen
    {
        shuffle_once(id, ql, &q).await;
    }

    let budget = if rules::hold_reason(&q, now).is_some() {
        ql.allowance.reset();
        0
    } else {
        ql.allowance.earn(q.admit_per_minute, elapsed)
    };
    let measured = ql.measured_rate(instant);
    let args = AdmitArgs {
        now_ms,
        budget,
        max_active: q.max_active_users,
        session_ms: q.session_ttl.as_millis(),
        abandon_secs: q.abandon_after.as_secs(),
        measured_rate: measured,
    };
    match store::admit(&ql.redis, &ql.keys, &args).await {
        Ok(counts) => {
            ql.allowance.spend(counts.admitted);
            if counts.admitted > 0 {
                ql.recent.push_back((instant, counts.admitted));
            }
            if let Some(labels) = &labels {
                let m = &state.metrics;
                m.queue_admitted
                    .get_or_create(labels)
                    .inc_by(counts.admitted);
                m.queue_abandoned
                    .get_or_create(labels)
                    .inc_by(counts.abandoned);
                publish(state, labels, counts, measured);
            }
        }
        Err(e) => tracing::warn!(error = %e, queue = id, "admission tick failed"),
    }
}

/// A tick of a replica that does not hold the lease: start from nothing saved up if it takes
/// over later; the peek only feeds the gauges.
async fn follow(
    state: &AppState,
    id: &str,
    ql: &mut QueueLoop,
    labels: Option<&QueueLabels>,
    now_ms: i64,
) {
    ql.allowance.reset();
    ql.shuffle_checked = false;
    if let Some(labels) = labels {
        match store::peek(&ql.redis, &ql.keys, now_ms).await {
            Ok((counts, rate)) => publish(state, labels, counts, rate),
            Err(e) => tracing::debug!(error = %e, queue = id, "queue peek failed"),
        }
    }
}

/// Shuffles the pre-queue of a random queue that opened, once (retried next tick on error).
async fn shuffle_once(id: &str, ql: &mut QueueLoop, q: &QueueSettings) {
    let seed = rand::random();
    match store::shuffle_pre_queue(&ql.redis, &ql.keys, seed, q.token_ttl.as_secs()).await {
        Ok(n) => {
            ql.shuffle_checked = true;
            if n >= 0 {
                tracing::info!(
                    queue = id,
                    shuffled = n,
                    "random queue opened: pre-queue shuffled"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, queue = id, "pre-queue shuffle failed; retrying next tick")
        }
    }
}

fn publish(state: &AppState, labels: &QueueLabels, counts: Counts, rate: f64) {
    let m = &state.metrics;
    m.queue_waiting
        .get_or_create(labels)
        .set(i64::try_from(counts.waiting).unwrap_or(i64::MAX));
    m.queue_active
        .get_or_create(labels)
        .set(i64::try_from(counts.active).unwrap_or(i64::MAX));
    m.queue_admission_rate.get_or_create(labels).set(rate);
}
