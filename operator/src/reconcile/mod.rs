//! The reconcilers, written once and run by both front ends: the Kubernetes controller
//! ([`crate::cluster`]) and the local `--manifests` runner ([`crate::local`]). Everything they
//! touch outside Redis and the app's metrics goes through [`Platform`], so the same pipeline
//! — validate → observe → decide (pure) → act → status — runs against the API server or a
//! folder of YAML files.

pub mod campaign;
mod command;
pub mod originals;
pub mod pause;
mod prelude;
pub mod queue_config;
mod ramp;
mod restore;
pub mod runtime_sync;
mod signals;
pub mod status;
mod target;
pub mod validate;

use std::{collections::HashMap, sync::Arc, time::Duration};

use floodgate_crds::v1alpha1::{
    Campaign, CampaignStatus, QueueConfig, QueueConfigStatus, ScaleTargetRef,
};
use tokio::sync::Mutex;

use crate::{
    observe::{depth::QueueDepthSource, p95::LatencyWindow},
    scaling::History,
    store::RedisTarget,
    telemetry::Metrics,
};

/// The field manager of every write, so `kubectl get -o yaml --show-managed-fields` names us
/// and server-side apply conflicts are attributable.
pub const FIELD_MANAGER: &str = "floodgate-operator";

/// A failure of the platform (API server or local files).
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Local(String),
}

impl PlatformError {
    /// The object does not exist (HTTP 404): a state to report, not a failure to retry.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Kube(kube::Error::Api(s)) if s.is_not_found())
    }
}

/// One error variant per pipeline step that can fail, so a failure says where it happened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing resources failed: {0}")]
    List(#[source] PlatformError),
    #[error("checking who else scales the target failed: {0}")]
    CheckConflicts(#[source] PlatformError),
    #[error("reading the target's scale failed: {0}")]
    ReadScale(#[source] PlatformError),
    #[error("patching the target's scale failed: {0}")]
    PatchScale(#[source] PlatformError),
    #[error("writing status failed: {0}")]
    WriteStatus(#[source] PlatformError),
    #[error("restoring Redis settings failed: {0}")]
    RestoreRedis(#[source] crate::store::memory::MemoryError),
    #[error("removing the campaign's queues from the runtime config failed: {0}")]
    Unpublish(#[source] crate::store::runtime_doc::DocError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::List(_) => "list",
            Self::CheckConflicts(_) => "check_conflicts",
            Self::ReadScale(_) => "read_scale",
            Self::PatchScale(_) => "patch_scale",
            Self::WriteStatus(_) => "write_status",
            Self::RestoreRedis(_) => "restore_redis",
            Self::Unpublish(_) => "unpublish",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// What to do next: look again after a delay, or only when something changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next(pub Option<Duration>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteType {
    Normal,
    Warning,
}

/// An Event to record about a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub type_: NoteType,
    /// PascalCase, e.g. Scaled, PanicStarted, Conflict.
    pub reason: &'static str,
    pub message: String,
    /// What the operator did, e.g. Scale, Publish.
    pub action: &'static str,
}

impl Note {
    pub fn normal(reason: &'static str, action: &'static str, message: String) -> Self {
        Self {
            type_: NoteType::Normal,
            reason,
            message,
            action,
        }
    }

    pub fn warning(reason: &'static str, action: &'static str, message: String) -> Self {
        Self {
            type_: NoteType::Warning,
            reason,
            message,
            action,
        }
    }
}

/// What a Campaign scales: its `scaleTargetRef`, in the Campaign's namespace.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub target: &'a ScaleTargetRef,
}

/// Everything outside Redis and the app's metrics that a reconcile reads or changes.
#[allow(async_fn_in_trait)]
pub trait Platform: Send + Sync + 'static {
    /// Replicas of the target's scale subresource.
    async fn read_scale(&self, w: Workload<'_>) -> Result<u32, PlatformError>;
    /// Sets the replicas of the scale subresource (one field manager: [`FIELD_MANAGER`]).
    async fn write_scale(&self, w: Workload<'_>, replicas: u32) -> Result<(), PlatformError>;
    /// What else scales the campaign's target (HPAs, older Campaigns), described.
    async fn competitors(&self, campaign: &Campaign) -> Result<Vec<String>, PlatformError>;
    /// Every Campaign and QueueConfig the operator manages (for the runtime document).
    async fn campaigns(&self) -> Result<Vec<Campaign>, PlatformError>;
    async fn queue_configs(&self) -> Result<Vec<QueueConfig>, PlatformError>;
    /// `/metrics` URLs of the app pods a campaign scales.
    async fn scrape_urls(&self, campaign: &Campaign) -> Result<Vec<String>, PlatformError>;
    /// `/metrics` URLs to read a queue's gauges from, if any app serves it.
    async fn queue_scrape_urls(&self, queue: &QueueConfig) -> Result<Vec<String>, PlatformError>;
    /// The data of a Secret a Campaign's authRef names (its namespace), `None` when there is
    /// none. The values are credentials: never logged, never written to a status.
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<crate::observe::credentials::SecretData>, PlatformError>;
    /// Best effort: a failure is logged by the implementation, never fails a reconcile.
    async fn record(&self, campaign_or_queue: &ObjectKey, note: Note);
    async fn write_campaign_status(
        &self,
        campaign: &Campaign,
        status: &CampaignStatus,
    ) -> Result<(), PlatformError>;
    async fn write_queue_status(
        &self,
        queue: &QueueConfig,
        status: &QueueConfigStatus,
    ) -> Result<(), PlatformError>;
}

/// Which object an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectKey {
    pub fn of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> Self {
        let meta = obj.meta();
        Self {
            kind: if K::kind(&()) == "Campaign" {
                "Campaign"
            } else {
                "QueueConfig"
            },
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone(),
        }
    }
}

/// What a campaign's decisions remember between resyncs. The decision's part is also
/// written to `status.decision` and loaded from there by a process that has not seen the
/// campaign yet (a restart, a new leader); the p95 window starts afresh.
#[derive(Default)]
pub struct CampaignMemory {
    pub history: History,
    pub latency: LatencyWindow,
}

impl CampaignMemory {
    /// This process's memory of the campaign `key`, or the one its status carries.
    pub async fn take<P>(ctx: &Context<P>, key: &str, status: &CampaignStatus) -> Self {
        ctx.memory.lock().await.remove(key).unwrap_or_else(|| Self {
            history: status
                .decision
                .as_ref()
                .map(History::from_status)
                .unwrap_or_default(),
            latency: LatencyWindow::default(),
        })
    }
}

/// One reconcile of one Campaign: the object, the shared context, the status it was read
/// with and the time the whole pass uses. The steps take it with the status they write.
pub(crate) struct Pass<'a, P> {
    pub c: &'a Campaign,
    pub ctx: &'a Context<P>,
    pub old: &'a CampaignStatus,
    pub now: chrono::DateTime<chrono::Utc>,
}

impl<P> Clone for Pass<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for Pass<'_, P> {}

impl<P> Pass<'_, P> {
    /// The conditions of `st`, stamped with this pass's time and the campaign's generation.
    pub fn conditions<'s>(&self, st: &'s mut CampaignStatus) -> status::Conditions<'s> {
        status::Conditions::of(self.c, &mut st.conditions, self.now)
    }
}

/// Shared by every reconcile.
pub struct Context<P> {
    pub platform: P,
    pub redis: RedisTarget,
    pub http: reqwest::Client,
    /// For the Prometheus a Campaign names (see `--prometheus-ca-file`).
    pub prometheus: crate::observe::prometheus::PromClient,
    pub depth: Box<dyn QueueDepthSource>,
    pub metrics: Arc<Metrics>,
    pub memory: Mutex<HashMap<String, CampaignMemory>>,
    /// Consecutive failures per object, for the error policy's backoff.
    pub failures: std::sync::Mutex<HashMap<String, u32>>,
    /// Label names that scope Prometheus queries to a Campaign's app.
    pub prometheus_labels: crate::observe::prometheus::PromLabels,
    /// Clients built from Campaigns' Secret-held credentials.
    pub clients: crate::observe::credentials::Clients,
}

impl<P: Platform> Context<P> {
    pub fn new(
        platform: P,
        redis: RedisTarget,
        depth: Box<dyn QueueDepthSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            platform,
            redis,
            http,
            prometheus: Default::default(),
            depth,
            metrics,
            memory: Mutex::default(),
            failures: Default::default(),
            prometheus_labels: Default::default(),
            clients: Default::default(),
        }
    }

    /// The Prometheus client (a CA bundle of its own).
    pub fn with_prometheus_client(
        self,
        prometheus: crate::observe::prometheus::PromClient,
    ) -> Self {
        Self { prometheus, ..self }
    }

    /// Other label names than `namespace` and `pod` for Prometheus queries.
    pub fn with_prometheus_labels(
        self,
        prometheus_labels: crate::observe::prometheus::PromLabels,
    ) -> Self {
        Self {
            prometheus_labels,
            ..self
        }
    }
}

impl<P> Context<P> {
    /// Backoff after a failed reconcile: 5 s doubling per consecutive failure, at most 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        Duration::from_secs(5u64.saturating_mul(1 << (*n - 1).min(6)).min(300))
    }

    /// A success resets the backoff.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// `namespace/name`, the key of per-object memory and metrics labels.
pub fn key_of<K: kube::Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or("default"),
        obj.meta().name.as_deref().unwrap_or("")
    )
}
