//! [`Platform`] without a cluster: resources come from the manifests folder, the Deployment
//! is simulated (a scaling decision is logged and remembered as the new replica count instead
//! of patched), Events are log lines, and each resource's status is a YAML file.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
};

use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, QueueConfig, QueueConfigStatus};
use kube::ResourceExt;
use serde::Serialize;

use crate::{
    phase::{commands_resources, phase_at},
    reconcile::{Note, NoteType, ObjectKey, Platform, PlatformError, Workload, key_of},
};

#[derive(Default)]
struct State {
    campaigns: Vec<Campaign>,
    queue_configs: Vec<QueueConfig>,
    /// Simulated replicas per `namespace/deployment`.
    replicas: HashMap<String, u32>,
    campaign_status: HashMap<String, CampaignStatus>,
    queue_status: HashMap<String, QueueConfigStatus>,
}

#[derive(Clone)]
pub struct LocalPlatform {
    state: Arc<Mutex<State>>,
    app_metrics_url: String,
    status_dir: PathBuf,
    initial_replicas: u32,
    /// Where Secret manifests are read from (the manifests folder); none: no Secret exists.
    secrets_dir: Option<PathBuf>,
}

impl LocalPlatform {
    pub fn new(app_metrics_url: String, status_dir: PathBuf, initial_replicas: u32) -> Self {
        Self {
            state: Arc::default(),
            app_metrics_url,
            status_dir,
            initial_replicas,
            secrets_dir: None,
        }
    }

    /// Secrets a Campaign's authRef names are read from the `kind: Secret` manifests in `dir`.
    pub fn with_secrets_dir(self, dir: PathBuf) -> Self {
        Self {
            secrets_dir: Some(dir),
            ..self
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the resources with what the folder holds now; statuses are kept.
    pub fn set_resources(&self, campaigns: Vec<Campaign>, queue_configs: Vec<QueueConfig>) {
        let mut s = self.state();
        s.campaigns = campaigns;
        s.queue_configs = queue_configs;
    }

    /// The object as a reconcile should see it: with its last written status.
    pub fn with_status(&self, mut c: Campaign) -> Campaign {
        c.status = self.state().campaign_status.get(&key_of(&c)).cloned();
        c
    }

    pub fn queue_with_status(&self, mut q: QueueConfig) -> QueueConfig {
        q.status = self.state().queue_status.get(&key_of(&q)).cloned();
        q
    }

    /// A removed resource's status file goes too.
    pub fn forget(&self, kind: &str, key: &str) {
        let mut s = self.state();
        s.campaign_status.remove(key);
        s.queue_status.remove(key);
        let _ = std::fs::remove_file(self.status_path(kind, key));
    }

    fn status_path(&self, kind: &str, key: &str) -> PathBuf {
        self.status_dir
            .join(format!("{kind}-{}.yaml", key.replace('/', "-")))
    }

    fn write_file<S: Serialize>(
        &self,
        kind: &str,
        key: &str,
        status: &S,
    ) -> Result<(), PlatformError> {
        #[derive(Serialize)]
        struct File<'a, S> {
            kind: &'a str,
            name: &'a str,
            status: &'a S,
        }
        let err =
            |e: &dyn std::fmt::Display| PlatformError::Local(format!("status file for {key}: {e}"));
        std::fs::create_dir_all(&self.status_dir).map_err(|e| err(&e))?;
        let yaml = serde_yaml::to_string(&File {
            kind,
            name: key,
            status,
        })
        .map_err(|e| err(&e))?;
        // Write then rename, so a reader never sees half a file.
        let path = self.status_path(kind, key);
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, yaml)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| err(&e))
    }
}

impl Platform for LocalPlatform {
    async fn read_scale(&self, w: Workload<'_>) -> Result<u32, PlatformError> {
        let Workload { namespace, target } = w;
        Ok(*self
            .state()
            .replicas
            .get(&format!("{namespace}/{}", target.name))
            .unwrap_or(&self.initial_replicas))
    }

    async fn write_scale(&self, w: Workload<'_>, replicas: u32) -> Result<(), PlatformError> {
        let Workload { namespace, target } = w;
        let key = format!("{namespace}/{}", target.name);
        let from = self
            .state()
            .replicas
            .insert(key.clone(), replicas)
            .unwrap_or(self.initial_replicas);
        tracing::info!(deployment = %key, kind = %target.kind, from, to = replicas, "scaling decision (local mode: reported, not applied)");
        Ok(())
    }

    async fn competitors(&self, campaign: &Campaign) -> Result<Vec<String>, PlatformError> {
        let now = chrono::Utc::now();
        // No creation times in files: the campaign whose name sorts first keeps the Deployment.
        Ok(self
            .state()
            .campaigns
            .iter()
            .filter(|o| {
                o.namespace() == campaign.namespace()
                    && o.name_any() < campaign.name_any()
                    && o.spec.target.scale_ref() == campaign.spec.target.scale_ref()
                    && commands_resources(phase_at(&o.spec.schedule, now))
            })
            .map(|o| format!("Campaign/{}", o.name_any()))
            .collect())
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, PlatformError> {
        Ok(self.state().campaigns.clone())
    }

    async fn queue_configs(&self) -> Result<Vec<QueueConfig>, PlatformError> {
        Ok(self.state().queue_configs.clone())
    }

    async fn scrape_urls(&self, _: &Campaign) -> Result<Vec<String>, PlatformError> {
        Ok(vec![self.app_metrics_url.clone()])
    }

    async fn queue_scrape_urls(&self, _: &QueueConfig) -> Result<Vec<String>, PlatformError> {
        Ok(vec![self.app_metrics_url.clone()])
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<crate::observe::credentials::SecretData>, PlatformError> {
        Ok(self
            .secrets_dir
            .as_deref()
            .and_then(|dir| super::manifests::secret(dir, namespace, name)))
    }

    async fn record(&self, obj: &ObjectKey, note: Note) {
        let object = format!("{}/{}/{}", obj.kind, obj.namespace, obj.name);
        match note.type_ {
            NoteType::Normal => tracing::info!(%object, reason = note.reason, "{}", note.message),
            NoteType::Warning => tracing::warn!(%object, reason = note.reason, "{}", note.message),
        }
    }

    async fn write_campaign_status(
        &self,
        c: &Campaign,
        status: &CampaignStatus,
    ) -> Result<(), PlatformError> {
        let key = key_of(c);
        self.state()
            .campaign_status
            .insert(key.clone(), status.clone());
        self.write_file("campaign", &key, status)
    }

    async fn write_queue_status(
        &self,
        q: &QueueConfig,
        status: &QueueConfigStatus,
    ) -> Result<(), PlatformError> {
        let key = key_of(q);
        self.state()
            .queue_status
            .insert(key.clone(), status.clone());
        self.write_file("queueconfig", &key, status)
    }
}
