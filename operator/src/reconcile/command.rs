//! The commanding step of a Prewarming/Active campaign: observe the signals, decide (pure),
//! scale the Deployment and set Redis's memory settings, recording it all in the status.

use chrono::{DateTime, Utc};
use floodgate_crds::{
    Dur,
    v1alpha1::{Campaign, CampaignStatus, ObservedSignals, ReplicaStatus},
};

use super::{
    CampaignMemory, Context, Error, Note, ObjectKey, Pass, Platform, PlatformError, key_of,
    originals, signals,
    status::{self, Conditions},
};
use crate::{
    observe::{self, ObserveRequest, Source, p95::LatencyWindow},
    scaling::{self, Decision, History, Input, Policy, Signals},
    store::memory::{self, MemoryError, MemoryWanted},
};

/// Default p95 window when the campaign does not set `scaling.metrics.window`.
const DEFAULT_WINDOW: Dur = Dur::from_secs(30);

/// `current` is the target's replica count, just read.
pub async fn command<P: Platform>(
    p: &Pass<'_, P>,
    st: &mut CampaignStatus,
    current: u32,
) -> Result<(), Error> {
    let Pass { c, ctx, old, now } = *p;
    // Take over: the originals reach the status before anything is changed.
    let before = save_originals(c, ctx, st, old, current).await?;
    let key = key_of(c);
    let mut memory = CampaignMemory::take(ctx, &key, old).await;
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let (signals, problems) = observe_signals(c, ctx, &mut memory.latency, now_ms).await?;

    // Decide (pure).
    let input = Input {
        now: now_ms,
        current,
        signals,
    };
    let policy = Policy::from_spec(&c.spec.scaling);
    let decision = scaling::decide(&policy, &input, &mut memory.history);

    // Act: scale.
    let scaled = scale(
        c,
        ctx,
        &mut memory.history,
        current,
        decision.desired,
        now_ms,
    )
    .await;
    // Persisted with this reconcile's status write (it changes only when the decision's
    // memory does, so a steady campaign adds no writes).
    st.decision = Some(memory.history.to_status());
    ctx.memory.lock().await.insert(key, memory);
    scaled.map_err(Error::PatchScale)?;
    let step = Step {
        current,
        before,
        decision,
        signals: input.signals,
        problems,
    };
    announce(p, st, &step).await;
    show(c, ctx, st, &step, now);

    // Act: Redis memory settings, every resync (a restarted Redis forgets them).
    configure_redis(p, st).await;
    Ok(())
}

/// One commanding pass: the replicas found, saved and decided, and what was read.
struct Step {
    current: u32,
    /// The pre-campaign replica count.
    before: i32,
    decision: Decision,
    signals: Signals,
    /// What could not be read, for MetricsAvailable.
    problems: Vec<String>,
}

/// Observe: the campaign's queue depth, p95 and triggers, from its Prometheus or its app
/// pods (with the credentials its Secrets hold), and what could not be read.
async fn observe_signals<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    window: &mut LatencyWindow,
    now: u64,
) -> Result<(Signals, Vec<String>), Error> {
    let mut problems = Vec::new();
    let queue_ids = queue_ids_of(c, ctx, &mut problems).await?;
    let metrics = &c.spec.scaling.metrics;
    let scrape_urls = match &metrics.prometheus {
        Some(_) => Vec::new(),
        None => ctx.platform.scrape_urls(c).await.unwrap_or_else(|e| {
            problems.push(format!("finding app pods: {e}"));
            Vec::new()
        }),
    };
    // Credentials from the Campaign's Secrets, and its extra signals.
    let resolved = signals::resolve(c, ctx).await;
    let target = super::target::target_of(c);
    let source = match &metrics.prometheus {
        Some(p) => Source::Prometheus {
            url: &p.url,
            scope: observe::prometheus::Scope {
                namespace: c.metadata.namespace.as_deref().unwrap_or("default"),
                deployment: target.name.as_str(),
                labels: &ctx.prometheus_labels,
            },
            client: &resolved.prometheus,
        },
        None => Source::Pods,
    };
    let mut observed = observe::observe(ObserveRequest {
        http: &ctx.http,
        scrape_urls: &scrape_urls,
        source,
        p95_window: metrics.window.unwrap_or(DEFAULT_WINDOW),
        queue_ids: &queue_ids,
        depth: resolved.depth.as_deref().unwrap_or(ctx.depth.as_ref()),
        window,
        now,
    })
    .await;
    problems.append(&mut observed.problems);
    let (triggers, trigger_problems) = observe::triggers::read(&resolved.triggers).await;
    observed.signals.triggers = triggers;
    problems.extend(trigger_problems);
    Ok((observed.signals, problems))
}

/// Act: writes the decided replicas when they differ from `current`, and remembers the
/// change for the scale-down delays.
async fn scale<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    history: &mut History,
    current: u32,
    desired: u32,
    now: u64,
) -> Result<(), PlatformError> {
    if desired != current {
        super::target::write_target(c, ctx, desired).await?;
        history.record_change(now, current, desired);
    }
    Ok(())
}

/// The Events of a pass: a scale, a panic starting or ending, the fallback taking over.
async fn announce<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus, step: &Step) {
    let Pass { c, ctx, old, now } = *p;
    let (obj, current, decision) = (ObjectKey::of(c), step.current, &step.decision);
    if decision.desired != current {
        st.last_scale_time = Some(now);
        let msg = format!(
            "scaled {} from {current} to {}: {}",
            c.spec.target.describe(),
            decision.desired,
            decision.reason
        );
        ctx.platform
            .record(&obj, Note::normal("Scaled", "Scale", msg))
            .await;
    }
    if decision.panic != old.panic {
        let (reason, msg) = if decision.panic {
            let wanted = decision.recommendation;
            let msg =
                format!("burst: {wanted} replicas wanted with {current} running; no scale-down");
            ("PanicStarted", msg)
        } else {
            let msg = "no burst for a stable window; scale-down allowed again";
            ("PanicEnded", msg.to_owned())
        };
        ctx.platform
            .record(&obj, Note::normal(reason, "Scale", msg))
            .await;
    }
    if decision.fallback && !old.fallback_active {
        let msg = format!(
            "metrics unavailable ({}); using {} replicas",
            step.problems.join("; "),
            decision.recommendation
        );
        ctx.platform
            .record(&obj, Note::warning("FallbackActivated", "Scale", msg))
            .await;
    }
}

/// The pass in the status (MetricsAvailable, replicas, signals, panic, fallback) and the
/// operator's metrics.
fn show<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    step: &Step,
    now: DateTime<Utc>,
) {
    let (decision, signals) = (&step.decision, &step.signals);
    let (ok, reason) = if step.problems.is_empty() {
        (true, "SignalsRead")
    } else {
        (false, "MetricsUnavailable")
    };
    let msg = step.problems.join("; ");
    Conditions::of(c, &mut st.conditions, now).set(status::METRICS_AVAILABLE, ok, reason, msg);
    st.replicas = Some(ReplicaStatus {
        current: to_i32(step.current),
        desired: to_i32(decision.desired),
        reason: decision.reason.clone(),
        before: Some(step.before),
    });
    st.observed = Some(ObservedSignals {
        waiting: signals
            .waiting
            .map(|w| i64::try_from(w).unwrap_or(i64::MAX)),
        p95: status::show_latency(signals.latency),
        at: Some(now),
    });
    st.panic = decision.panic;
    st.fallback_active = decision.fallback;
    ctx.metrics.campaign(
        &key_of(c),
        decision.desired,
        decision.panic,
        decision.fallback,
        signals.waiting,
        signals.latency,
    );
}

/// The Redis settings the campaign asks for.
fn wanted_memory(c: &Campaign) -> MemoryWanted {
    c.spec
        .redis
        .as_ref()
        .map(|r| MemoryWanted {
            maxmemory: r.maxmemory.clone(),
            policy: r.maxmemory_policy,
        })
        .unwrap_or_default()
}

/// On a first takeover ([`originals::to_save`]), writes the replica count and the Redis
/// settings found to the status; a failed write fails the reconcile before any scale patch
/// or `CONFIG SET`. Returns the pre-campaign replica count.
pub(super) async fn save_originals<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    st: &mut CampaignStatus,
    old: &CampaignStatus,
    current: u32,
) -> Result<i32, Error> {
    let wanted = wanted_memory(c);
    let changes_redis = wanted != MemoryWanted::default() && memory::check(&wanted).is_ok();
    let save = originals::to_save(old, changes_redis);
    if save.replicas {
        st.replicas = Some(ReplicaStatus {
            current: to_i32(current),
            desired: to_i32(current),
            reason: "pre-campaign replica count saved before the first scale".into(),
            before: Some(to_i32(current)),
        });
    }
    if save.redis {
        // Unreadable: nothing saved, so configure_redis changes nothing this pass either.
        st.redis_before = memory::read(&ctx.redis).await.ok();
    }
    if save.any() {
        ctx.platform
            .write_campaign_status(c, st)
            .await
            .map_err(Error::WriteStatus)?;
    }
    Ok(st
        .replicas
        .as_ref()
        .and_then(|r| r.before)
        .unwrap_or(to_i32(current)))
}

/// The queue ids of the QueueConfigs the campaign names (same namespace).
async fn queue_ids_of<P: Platform>(
    c: &Campaign,
    ctx: &Context<P>,
    problems: &mut Vec<String>,
) -> Result<Vec<String>, Error> {
    let ns = c.metadata.namespace.as_deref().unwrap_or("default");
    let all = ctx.platform.queue_configs().await.map_err(Error::List)?;
    let mut ids = Vec::new();
    for name in &c.spec.queues {
        match all.iter().find(|q| {
            q.metadata.namespace.as_deref().unwrap_or("default") == ns
                && q.metadata.name.as_deref() == Some(name)
        }) {
            Some(q) => ids.push(q.spec.queue_id.clone()),
            None => problems.push(format!("QueueConfig {ns}/{name} not found")),
        }
    }
    Ok(ids)
}

async fn configure_redis<P: Platform>(p: &Pass<'_, P>, st: &mut CampaignStatus) {
    let Pass { c, ctx, old, .. } = *p;
    let wanted = wanted_memory(c);
    if wanted == MemoryWanted::default() {
        p.conditions(st)
            .set(status::REDIS_CONFIGURED, true, "NotRequested", "");
        return;
    }
    let result = async {
        memory::check(&wanted)?;
        if st.redis_before.is_none() {
            return Err(MemoryError::NotSaved);
        }
        memory::apply(&ctx.redis, &wanted).await
    }
    .await;
    match result {
        Ok(applied) => {
            let msg = format!(
                "maxmemory {} maxmemory-policy {}",
                applied.maxmemory, applied.maxmemory_policy
            );
            st.redis_applied = Some(applied);
            p.conditions(st)
                .set(status::REDIS_CONFIGURED, true, "Applied", msg);
        }
        Err(e) => {
            let reason = if matches!(e, MemoryError::Refused(_)) {
                "EvictionPolicyRefused"
            } else {
                "RedisUnavailable"
            };
            if status::reason_of(&old.conditions, status::REDIS_CONFIGURED) != Some(reason) {
                ctx.platform
                    .record(
                        &ObjectKey::of(c),
                        Note::warning(reason, "ConfigureRedis", e.to_string()),
                    )
                    .await;
            }
            p.conditions(st)
                .set(status::REDIS_CONFIGURED, false, reason, e.to_string());
        }
    }
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
