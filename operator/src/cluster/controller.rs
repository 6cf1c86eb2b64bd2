//! controller-rs shape: `reconcile` wraps the pipeline in kube's `finalizer()`, `error_policy`
//! backs off per object, and `run` drives both controllers over shared reflector caches.

use std::sync::Arc;

use chrono::Utc;
use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use futures::{Stream, StreamExt};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ListParams,
    runtime::{
        Controller, Predicate, PredicateConfig, WatchStreamExt,
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
        predicates, reflector, watcher,
    },
};

use super::platform::KubePlatform;
use crate::reconcile::{Context, Error, Next, campaign, key_of, queue_config};

pub const CAMPAIGN_FINALIZER: &str = "floodgate.dev/campaign";
pub const QUEUE_FINALIZER: &str = "floodgate.dev/queueconfig";

pub type Ctx = Context<KubePlatform>;

fn action(next: Next) -> Action {
    match next.0 {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    }
}

pub async fn reconcile_campaign(c: Arc<Campaign>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("Campaign");
    let api = Api::<Campaign>::namespaced(
        ctx.platform.client.clone(),
        c.namespace().as_deref().unwrap_or("default"),
    );
    let key = key_of(c.as_ref());
    // A ramp-down on deletion runs before the finalizer's cleanup, which keeps the object.
    let ours = c.finalizers().iter().any(|f| f == CAMPAIGN_FINALIZER);
    if c.meta().deletion_timestamp.is_some()
        && ours
        && let Some(next) = campaign::ramp_on_delete(&c, &ctx, Utc::now()).await?
    {
        ctx.succeeded(&key);
        return Ok(action(next));
    }
    let result = finalizer(&api, CAMPAIGN_FINALIZER, c, |event| async {
        match event {
            Finalizer::Apply(c) => campaign::apply(&c, &ctx, Utc::now()).await,
            Finalizer::Cleanup(c) => campaign::cleanup(&c, &ctx, Utc::now()).await,
        }
        .map(action)
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

pub async fn reconcile_queue_config(q: Arc<QueueConfig>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile("QueueConfig");
    let api = Api::<QueueConfig>::namespaced(
        ctx.platform.client.clone(),
        q.namespace().as_deref().unwrap_or("default"),
    );
    let key = key_of(q.as_ref());
    let result = finalizer(&api, QUEUE_FINALIZER, q, |event| async {
        match event {
            Finalizer::Apply(q) => queue_config::apply(&q, &ctx, Utc::now()).await.map(action),
            Finalizer::Cleanup(q) => queue_config::cleanup(&q, &ctx, Utc::now())
                .await
                .map(action),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// Failures retry with exponential backoff per object; invalid specs never get here (they
/// succeed with "await change").
pub fn error_policy<K: kube::Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Ctx>,
) -> Action {
    let kind = K::kind(&()).to_string();
    tracing::warn!(%error, object = %key_of(obj.as_ref()), "reconcile failed");
    ctx.metrics.failure(&kind, error.metric_label());
    Action::requeue(ctx.backoff(&key_of(obj.as_ref())))
}

/// Campaigns and QueueConfigs of the watched namespace (`--watch-namespace`), or of all.
fn watched<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers until `shutdown` resolves and their reconciles have finished.
/// `ready` flips once the caches have synced; `namespace` None watches every namespace.
pub async fn run(
    client: Client,
    ctx_parts: CtxParts,
    ready: Arc<std::sync::atomic::AtomicBool>,
    namespace: Option<&str>,
    shutdown: super::leader::Shutdown,
) -> anyhow::Result<()> {
    let campaigns: Api<Campaign> = watched(&client, namespace);
    let queues: Api<QueueConfig> = watched(&client, namespace);
    for (what, r) in [
        (
            "Campaign",
            campaigns
                .list(&ListParams::default().limit(1))
                .await
                .map(|_| ()),
        ),
        (
            "QueueConfig",
            queues
                .list(&ListParams::default().limit(1))
                .await
                .map(|_| ()),
        ),
    ] {
        r.map_err(|e| anyhow::anyhow!("{what} CRD not installed or not readable ({e}); run `floodgate-operator crd | kubectl apply -f -`"))?;
    }
    let campaign_ctl = controller(campaigns).graceful_shutdown_on(shutdown.clone());
    let queue_ctl = controller(queues).graceful_shutdown_on(shutdown);
    let (campaign_store, queue_store) = (campaign_ctl.store(), queue_ctl.store());
    let platform = KubePlatform::new(client, campaign_store.clone(), queue_store.clone());
    let ctx = Arc::new(
        Context::new(
            platform,
            ctx_parts.redis,
            ctx_parts.depth,
            ctx_parts.metrics,
        )
        .with_prometheus_labels(ctx_parts.prometheus_labels)
        .with_prometheus_client(ctx_parts.prometheus),
    );

    let readiness = async {
        let _ = tokio::join!(
            campaign_store.wait_until_ready(),
            queue_store.wait_until_ready()
        );
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let campaigns = campaign_ctl
        .run(reconcile_campaign, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "campaign controller event");
            }
        });
    let queues = queue_ctl
        .run(reconcile_queue_config, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "queue controller event");
            }
        });
    tokio::join!(readiness, campaigns, queues);
    Ok(())
}

/// 1 while the object is being deleted, so the deletion mark wakes the finalizer even where
/// an API server does not bump the generation for it.
fn deletion_marked<K: Resource>(obj: &K) -> Option<u64> {
    Some(u64::from(obj.meta().deletion_timestamp.is_some()))
}

/// Which watch events wake a reconcile: a new generation (spec changes), a finalizer change
/// (the finalizer helper waits for the one it adds) and the deletion mark. Status writes —
/// ours, every resync — change none of these, so they no longer wake the next reconcile at
/// once; resyncs come from the requeue each reconcile returns. The reflector behind the
/// controller still sees every event, so the caches stay current.
pub fn reconcile_triggers<K, S>(objects: S) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Resource + 'static,
    S: Stream<Item = Result<K, watcher::Error>>,
{
    let wakes = predicates::generation
        .combine(predicates::finalizers)
        .combine(deletion_marked);
    objects.predicate_filter(wakes, PredicateConfig::default())
}

/// A controller like `Controller::new`, with [`reconcile_triggers`] between the reflector and
/// the scheduler.
fn controller<K>(api: Api<K>) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let objects = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    Controller::for_stream(reconcile_triggers(objects), reader)
}

/// The non-Kubernetes parts of the context, built by `main`.
pub struct CtxParts {
    pub redis: crate::store::RedisTarget,
    pub depth: Box<dyn crate::observe::depth::QueueDepthSource>,
    pub metrics: Arc<crate::telemetry::Metrics>,
    pub prometheus_labels: crate::observe::prometheus::PromLabels,
    pub prometheus: crate::observe::prometheus::PromClient,
}
