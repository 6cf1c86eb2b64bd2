//! The admission loop. Every replica runs one task that, for each known queue, takes or renews
//! that queue's Redis lease: the holder admits (at `admitPerMinute`, while active sessions are
//! below `maxActiveUsers`, not while paused or before `opensAt`), the others only refresh
//! their gauges from Redis so every replica exports the queue-wide counts. Settings are read
//! from the runtime config on every tick, so changes apply within one tick of arriving.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use chrono::Utc;
use floodgate_crds::runtime::Queueing;
use tokio::sync::watch;

use super::{
    lease::Lease,
    rules::{self, Allowance, Phase},
    store::{self, AdmitArgs, Counts},
};
use crate::{platform::metrics::QueueLabels, state::AppState};

pub const TICK: Duration = Duration::from_millis(200);
/// How often the set of queues is re-read.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// Window over which the admission rate is measured for ETAs.
const RATE_WINDOW: Duration = Duration::from_secs(10);

struct QueueLoop {
    lease: Lease,
    allowance: Allowance,
    last_tick: Option<Instant>,
    recent: VecDeque<(Instant, u64)>,
    shuffle_checked: bool,
}

impl QueueLoop {
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

pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let holder = format!(
        "{}:{}",
        state.settings.replica_id(),
        uuid::Uuid::new_v4().simple()
    );
    let mut loops: HashMap<String, QueueLoop> = HashMap::new();
    let mut last_discover: Option<Instant> = None;
    loop {
        if last_discover.is_none_or(|t| t.elapsed() >= DISCOVER_EVERY) {
            let mut ids: Vec<String> = state.runtime.get().queues.keys().cloned().collect();
            match store::registered(&state).await {
                Ok(more) => ids.extend(more),
                Err(e) => tracing::debug!(error = %e, "queue registry unavailable"),
            }
            for id in ids {
                loops.entry(id.clone()).or_insert_with(|| QueueLoop {
                    lease: Lease::new(&state.redis, &format!("{{q:{id}}}:lease"), &holder),
                    allowance: Allowance::default(),
                    last_tick: None,
                    recent: VecDeque::new(),
                    shuffle_checked: false,
                });
            }
            last_discover = Some(Instant::now());
        }
        for (id, ql) in &mut loops {
            tick(&state, id, ql).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => break,
        }
    }
    for ql in loops.values() {
        ql.lease.release(&state.redis).await;
    }
}

async fn tick(state: &AppState, id: &str, ql: &mut QueueLoop) {
    let q = state.runtime.get().queue(id);
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let labels = QueueLabels {
        queue: id.to_owned(),
    };
    let instant = Instant::now();
    let elapsed = ql
        .last_tick
        .map_or(0.0, |t| instant.duration_since(t).as_secs_f64());
    ql.last_tick = Some(instant);

    if !ql.lease.hold(&state.redis).await {
        // not ours: start from nothing saved up if we take over later
        ql.allowance.reset();
        ql.shuffle_checked = false;
        match store::peek(state, id, now_ms).await {
            Ok((counts, rate)) => publish(state, &labels, counts, rate),
            Err(e) => tracing::debug!(error = %e, queue = id, "queue peek failed"),
        }
        return;
    }

    if !ql.shuffle_checked
        && q.queueing == Queueing::Random
        && q.opens_at.is_some()
        && rules::phase(&q, now) != Phase::NotOpen
    {
        match store::shuffle_pre_queue(state, id, rand::random(), q.token_ttl.as_secs()).await {
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
    match store::admit(state, id, &args).await {
        Ok(counts) => {
            ql.allowance.spend(counts.admitted);
            if counts.admitted > 0 {
                ql.recent.push_back((instant, counts.admitted));
            }
            state
                .metrics
                .queue_admitted
                .get_or_create(&labels)
                .inc_by(counts.admitted);
            state
                .metrics
                .queue_abandoned
                .get_or_create(&labels)
                .inc_by(counts.abandoned);
            publish(state, &labels, counts, measured);
        }
        Err(e) => tracing::warn!(error = %e, queue = id, "admission tick failed"),
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
