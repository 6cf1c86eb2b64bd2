//! The local loop: poll the folder every second, reconcile what changed or is due, clean up
//! what disappeared.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use tokio::time::Instant;

use super::{manifests, platform::LocalPlatform};
use crate::reconcile::{Context, Next, campaign, key_of, queue_config, runtime_sync};

pub struct Options {
    pub manifests: PathBuf,
    pub poll: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Campaign,
    QueueConfig,
}

/// What the folder held last time, and when each resource is due.
#[derive(Default)]
struct Tracked {
    campaigns: BTreeMap<String, Campaign>,
    queues: BTreeMap<String, QueueConfig>,
    /// Spec JSON and generation per resource: a changed spec bumps the generation, as the API
    /// server would.
    generations: HashMap<(Kind, String), (String, i64)>,
    due: HashMap<(Kind, String), Instant>,
}

impl Tracked {
    fn generation(&mut self, kind: Kind, key: &str, spec: String) -> (i64, bool) {
        let entry = self
            .generations
            .entry((kind, key.to_owned()))
            .or_insert_with(|| (String::new(), 0));
        let changed = entry.0 != spec;
        if changed {
            *entry = (spec, entry.1 + 1);
        }
        (entry.1, changed)
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    opts: Options,
    ctx: Arc<Context<LocalPlatform>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tracked = Tracked::default();
    let mut last_fingerprint = None;
    loop {
        let fingerprint = manifests::fingerprint(&opts.manifests);
        if last_fingerprint.as_ref() != Some(&fingerprint) {
            reload(&opts, &ctx, &mut tracked).await;
            last_fingerprint = Some(fingerprint);
        }
        reconcile_due(&ctx, &mut tracked).await;
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(opts.poll) => {}
        }
    }
}

async fn reload(opts: &Options, ctx: &Context<LocalPlatform>, tracked: &mut Tracked) {
    let m = manifests::load(&opts.manifests);
    for p in &m.problems {
        tracing::warn!(problem = %p, "skipping a manifest");
    }
    let now = Instant::now();
    let mut campaigns = BTreeMap::new();
    for mut c in m.campaigns {
        let key = key_of(&c);
        let (generation, changed) = tracked.generation(
            Kind::Campaign,
            &key,
            serde_json::to_string(&c.spec).unwrap_or_default(),
        );
        c.metadata.generation = Some(generation);
        if changed {
            tracked.due.insert((Kind::Campaign, key.clone()), now);
        }
        campaigns.insert(key, c);
    }
    let mut queues = BTreeMap::new();
    for mut q in m.queue_configs {
        let key = key_of(&q);
        let (generation, changed) = tracked.generation(
            Kind::QueueConfig,
            &key,
            serde_json::to_string(&q.spec).unwrap_or_default(),
        );
        q.metadata.generation = Some(generation);
        if changed {
            tracked.due.insert((Kind::QueueConfig, key.clone()), now);
        }
        queues.insert(key, q);
    }
    let removed_campaigns: Vec<_> = tracked
        .campaigns
        .iter()
        .filter(|(k, _)| !campaigns.contains_key(*k))
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    let removed_queues = tracked.queues.keys().any(|k| !queues.contains_key(k));
    ctx.platform.set_resources(
        campaigns.values().cloned().collect(),
        queues.values().cloned().collect(),
    );

    // A deleted file is a deleted resource: run the finalizer's cleanup.
    for (key, c) in removed_campaigns {
        tracing::info!(campaign = %key, "manifest removed: cleaning up");
        let c = ctx.platform.with_status(c);
        if let Err(e) = campaign::cleanup(&c, ctx, Utc::now()).await {
            tracing::warn!(campaign = %key, error = %e, "cleanup failed");
        }
        ctx.platform.forget("campaign", &key);
        tracked.due.remove(&(Kind::Campaign, key.clone()));
        tracked.generations.remove(&(Kind::Campaign, key));
    }
    if removed_queues {
        for key in tracked.queues.keys().filter(|k| !queues.contains_key(*k)) {
            ctx.platform.forget("queueconfig", key);
            tracked.due.remove(&(Kind::QueueConfig, key.clone()));
            tracked
                .generations
                .remove(&(Kind::QueueConfig, key.clone()));
        }
        let failed = match runtime_sync::sync(ctx, Utc::now(), None).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(error) = failed {
            tracing::warn!(%error, "republishing without the removed QueueConfig failed");
        }
    }
    tracked.campaigns = campaigns;
    tracked.queues = queues;
}

async fn reconcile_due(ctx: &Context<LocalPlatform>, tracked: &mut Tracked) {
    let now = Instant::now();
    let mut due: Vec<_> = tracked
        .due
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(k, _)| k.clone())
        .collect();
    // QueueConfigs first: a campaign's first look then already sees its queues published.
    due.sort();
    due.sort_by_key(|(kind, _)| *kind != Kind::QueueConfig);
    for (kind, key) in due {
        let result = match kind {
            Kind::Campaign => match tracked.campaigns.get(&key) {
                Some(c) => {
                    let _timer = ctx.metrics.reconcile("Campaign");
                    let c = ctx.platform.with_status(c.clone());
                    let r = campaign::apply(&c, ctx, Utc::now()).await;
                    log_decision(ctx, &c);
                    r
                }
                None => Ok(Next(None)),
            },
            Kind::QueueConfig => match tracked.queues.get(&key) {
                Some(q) => {
                    let _timer = ctx.metrics.reconcile("QueueConfig");
                    queue_config::apply(&ctx.platform.queue_with_status(q.clone()), ctx, Utc::now())
                        .await
                }
                None => Ok(Next(None)),
            },
        };
        let slot = (kind, key.clone());
        match result {
            Ok(Next(Some(after))) => {
                ctx.succeeded(&key);
                tracked.due.insert(slot, Instant::now() + after);
            }
            Ok(Next(None)) => {
                ctx.succeeded(&key);
                tracked.due.remove(&slot);
            }
            Err(e) => {
                ctx.metrics.failure(&format!("{kind:?}"), e.metric_label());
                let backoff = ctx.backoff(&key);
                tracing::warn!(object = %key, error = %e, retry_in = ?backoff, "reconcile failed");
                tracked.due.insert(slot, Instant::now() + backoff);
            }
        }
    }
}

/// The decision, as the log line a user watches in local mode.
fn log_decision(ctx: &Context<LocalPlatform>, c: &Campaign) {
    let Some(st) = ctx.platform.with_status(c.clone()).status else {
        return;
    };
    let replicas = st.replicas.unwrap_or_default();
    let observed = st.observed.unwrap_or_default();
    tracing::info!(
        campaign = %key_of(c),
        phase = ?st.phase,
        current = replicas.current,
        desired = replicas.desired,
        waiting = ?observed.waiting,
        p95 = ?observed.p95,
        panic = st.panic,
        fallback = st.fallback_active,
        reason = %replicas.reason,
        "decision"
    );
}
