//! [`Platform`] on a real API server: the Deployment's scale subresource, HPAs, pods for
//! scraping, Events, and status by server-side apply. Campaigns and QueueConfigs are read from
//! the controllers' reflector caches, not listed on every resync.

use chrono::Utc;
use floodgate_crds::v1alpha1::{Campaign, CampaignStatus, QueueConfig, QueueConfigStatus};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Pod, Secret},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        reflector::Store,
    },
};
use serde_json::json;

use crate::{
    phase::{commands_resources, phase_at},
    reconcile::{FIELD_MANAGER, Note, NoteType, ObjectKey, Platform, PlatformError},
};

/// Default port of the app's `/metrics` when the Campaign does not say.
const DEFAULT_METRICS_PORT: i32 = 8080;

#[derive(Clone)]
pub struct KubePlatform {
    pub client: Client,
    recorder: Recorder,
    campaigns: Store<Campaign>,
    queue_configs: Store<QueueConfig>,
}

impl KubePlatform {
    pub fn new(
        client: Client,
        campaigns: Store<Campaign>,
        queue_configs: Store<QueueConfig>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Self {
            client,
            recorder,
            campaigns,
            queue_configs,
        }
    }

    fn namespace(meta: &ObjectMeta) -> &str {
        meta.namespace.as_deref().unwrap_or("default")
    }
}

/// Who came first keeps the Deployment: older creation time, then name.
fn precedes(a: &Campaign, b: &Campaign) -> bool {
    (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        a.name_any(),
    ) < (
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.name_any(),
    )
}

impl Platform for KubePlatform {
    async fn read_scale(&self, namespace: &str, deployment: &str) -> Result<u32, PlatformError> {
        let scale = Api::<Deployment>::namespaced(self.client.clone(), namespace)
            .get_scale(deployment)
            .await?;
        Ok(scale
            .spec
            .and_then(|s| s.replicas)
            .map_or(0, |r| u32::try_from(r).unwrap_or(0)))
    }

    async fn write_scale(
        &self,
        namespace: &str,
        deployment: &str,
        replicas: u32,
    ) -> Result<(), PlatformError> {
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
        Api::<Deployment>::namespaced(self.client.clone(), namespace)
            .patch_scale(deployment, &pp, &patch)
            .await?;
        Ok(())
    }

    async fn competitors(&self, campaign: &Campaign) -> Result<Vec<String>, PlatformError> {
        let ns = Self::namespace(&campaign.metadata);
        let target = campaign.spec.target.deployment.as_str();
        let hpas = Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        let mut found: Vec<String> = hpas
            .items
            .iter()
            .filter(|h| {
                h.spec.as_ref().is_some_and(|s| {
                    s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == target
                })
            })
            .map(|h| format!("HorizontalPodAutoscaler/{}", h.name_any()))
            .collect();
        let now = Utc::now();
        found.extend(
            self.campaigns
                .state()
                .iter()
                .filter(|o| {
                    Self::namespace(&o.metadata) == ns
                        && o.name_any() != campaign.name_any()
                        && o.spec.target.deployment == target
                        && o.metadata.deletion_timestamp.is_none()
                        && commands_resources(phase_at(&o.spec.schedule, now))
                        && precedes(o, campaign)
                })
                .map(|o| format!("Campaign/{}", o.name_any())),
        );
        Ok(found)
    }

    /// One `get` (least privilege: no list or watch on Secrets, so the operator holds no
    /// Secret it does not use; it reads it again each resync, which also picks up rotation).
    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<crate::observe::credentials::SecretData>, PlatformError> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let found = secrets.get_opt(name).await?;
        Ok(found.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        }))
    }

    async fn campaigns(&self) -> Result<Vec<Campaign>, PlatformError> {
        Ok(self
            .campaigns
            .state()
            .iter()
            .map(|c| (**c).clone())
            .collect())
    }

    async fn queue_configs(&self) -> Result<Vec<QueueConfig>, PlatformError> {
        Ok(self
            .queue_configs
            .state()
            .iter()
            .map(|q| (**q).clone())
            .collect())
    }

    async fn scrape_urls(&self, campaign: &Campaign) -> Result<Vec<String>, PlatformError> {
        let ns = Self::namespace(&campaign.metadata);
        let deployment = Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get(&campaign.spec.target.deployment)
            .await?;
        let labels = deployment
            .spec
            .and_then(|s| s.selector.match_labels)
            .unwrap_or_default();
        if labels.is_empty() {
            return Err(PlatformError::Local(
                "the Deployment has no matchLabels selector".into(),
            ));
        }
        let selector = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = Api::<Pod>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default().labels(&selector))
            .await?;
        let scrape = campaign.spec.scaling.metrics.scrape.as_ref();
        let port = scrape.map_or(DEFAULT_METRICS_PORT, |s| s.port);
        let path = scrape.map_or("/metrics", |s| s.path.as_str());
        Ok(pods
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .map(|ip| {
                if ip.contains(':') {
                    format!("http://[{ip}]:{port}{path}")
                } else {
                    format!("http://{ip}:{port}{path}")
                }
            })
            .collect())
    }

    async fn queue_scrape_urls(&self, queue: &QueueConfig) -> Result<Vec<String>, PlatformError> {
        let ns = Self::namespace(&queue.metadata);
        let owner = self.campaigns.state().into_iter().find(|c| {
            Self::namespace(&c.metadata) == ns
                && c.spec.queues.iter().any(|q| *q == queue.name_any())
        });
        match owner {
            Some(c) => self.scrape_urls(&c).await,
            None => Ok(Vec::new()),
        }
    }

    async fn record(&self, obj: &ObjectKey, note: Note) {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("floodgate.dev/v1alpha1".into()),
            kind: Some(obj.kind.into()),
            name: Some(obj.name.clone()),
            namespace: Some(obj.namespace.clone()),
            uid: obj.uid.clone(),
            ..Default::default()
        };
        let event = Event {
            type_: if note.type_ == NoteType::Warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.message),
            action: note.action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason = note.reason, "publishing an Event failed");
        }
    }

    async fn write_campaign_status(
        &self,
        c: &Campaign,
        status: &CampaignStatus,
    ) -> Result<(), PlatformError> {
        let api = Api::<Campaign>::namespaced(self.client.clone(), Self::namespace(&c.metadata));
        let patch = Patch::Apply(
            json!({ "apiVersion": "floodgate.dev/v1alpha1", "kind": "Campaign", "status": status }),
        );
        api.patch_status(
            &c.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &patch,
        )
        .await?;
        Ok(())
    }

    async fn write_queue_status(
        &self,
        q: &QueueConfig,
        status: &QueueConfigStatus,
    ) -> Result<(), PlatformError> {
        let api = Api::<QueueConfig>::namespaced(self.client.clone(), Self::namespace(&q.metadata));
        let patch = Patch::Apply(
            json!({ "apiVersion": "floodgate.dev/v1alpha1", "kind": "QueueConfig", "status": status }),
        );
        api.patch_status(
            &q.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &patch,
        )
        .await?;
        Ok(())
    }
}
