//! [`Platform`] on a real API server: the target's scale subresource (Deployment, StatefulSet
//! or Argo Rollout, each by its typed API so the chart's RBAC test sees every call), HPAs, pods for
//! scraping, Events, and status by server-side apply. Campaigns and QueueConfigs are read from
//! the controllers' reflector caches, not listed on every resync.

use chrono::Utc;
use std::collections::BTreeMap;

use floodgate_crds::v1alpha1::{
    Campaign, CampaignStatus, QueueConfig, QueueConfigStatus, ScaleTargetRef,
};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        autoscaling::v1::Scale,
        autoscaling::v2::{CrossVersionObjectReference, HorizontalPodAutoscaler},
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

use super::rollout::{ROLLOUT_API_VERSION, Rollout};
use crate::{
    phase::{commands_resources, phase_at},
    reconcile::{FIELD_MANAGER, Note, NoteType, ObjectKey, Platform, PlatformError, Workload},
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

/// `apps/v1` → `apps`: HPAs may name the group with any version (or none).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// True when an HPA's `scaleTargetRef` names the same workload.
fn same_workload(hpa: &CrossVersionObjectReference, target: &ScaleTargetRef) -> bool {
    hpa.kind == target.kind
        && hpa.name == target.name
        && hpa
            .api_version
            .as_deref()
            .is_none_or(|v| group_of(v) == group_of(&target.api_version))
}

fn unsupported(target: &ScaleTargetRef) -> PlatformError {
    PlatformError::Local(format!(
        "scaleTargetRef {} {} is not a kind the operator scales (Deployment, StatefulSet, Rollout)",
        target.api_version, target.kind
    ))
}

fn replicas_of(scale: Scale) -> u32 {
    scale
        .spec
        .and_then(|s| s.replicas)
        .map_or(0, |r| u32::try_from(r).unwrap_or(0))
}

impl KubePlatform {
    /// The pod labels of the target's selector (`spec.selector.matchLabels`).
    async fn target_labels(
        &self,
        ns: &str,
        target: &ScaleTargetRef,
    ) -> Result<BTreeMap<String, String>, PlatformError> {
        let c = self.client.clone();
        let labels = match (target.api_version.as_str(), target.kind.as_str()) {
            ("apps/v1", "Deployment") => Api::<Deployment>::namespaced(c, ns)
                .get(&target.name)
                .await?
                .spec
                .and_then(|s| s.selector.match_labels),
            ("apps/v1", "StatefulSet") => Api::<StatefulSet>::namespaced(c, ns)
                .get(&target.name)
                .await?
                .spec
                .and_then(|s| s.selector.match_labels),
            (ROLLOUT_API_VERSION, "Rollout") => Api::<Rollout>::namespaced(c, ns)
                .get(&target.name)
                .await?
                .match_labels(),
            _ => return Err(unsupported(target)),
        };
        Ok(labels.unwrap_or_default())
    }
}

impl Platform for KubePlatform {
    async fn read_scale(&self, w: Workload<'_>) -> Result<u32, PlatformError> {
        let Workload { namespace, target } = w;
        let (c, name) = (self.client.clone(), target.name.as_str());
        let scale = match (target.api_version.as_str(), target.kind.as_str()) {
            ("apps/v1", "Deployment") => {
                Api::<Deployment>::namespaced(c, namespace)
                    .get_scale(name)
                    .await?
            }
            ("apps/v1", "StatefulSet") => {
                Api::<StatefulSet>::namespaced(c, namespace)
                    .get_scale(name)
                    .await?
            }
            (ROLLOUT_API_VERSION, "Rollout") => {
                Api::<Rollout>::namespaced(c, namespace)
                    .get_scale(name)
                    .await?
            }
            _ => return Err(unsupported(target)),
        };
        Ok(replicas_of(scale))
    }

    async fn write_scale(&self, w: Workload<'_>, replicas: u32) -> Result<(), PlatformError> {
        let Workload { namespace, target } = w;
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
        let (c, name) = (self.client.clone(), target.name.as_str());
        match (target.api_version.as_str(), target.kind.as_str()) {
            ("apps/v1", "Deployment") => {
                Api::<Deployment>::namespaced(c, namespace)
                    .patch_scale(name, &pp, &patch)
                    .await?
            }
            ("apps/v1", "StatefulSet") => {
                Api::<StatefulSet>::namespaced(c, namespace)
                    .patch_scale(name, &pp, &patch)
                    .await?
            }
            (ROLLOUT_API_VERSION, "Rollout") => {
                Api::<Rollout>::namespaced(c, namespace)
                    .patch_scale(name, &pp, &patch)
                    .await?
            }
            _ => return Err(unsupported(target)),
        };
        Ok(())
    }

    async fn competitors(&self, campaign: &Campaign) -> Result<Vec<String>, PlatformError> {
        let ns = Self::namespace(&campaign.metadata);
        let Some(target) = campaign.spec.target.scale_ref() else {
            return Ok(Vec::new());
        };
        let hpas = Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        let mut found: Vec<String> = hpas
            .items
            .iter()
            .filter(|h| {
                h.spec
                    .as_ref()
                    .is_some_and(|s| same_workload(&s.scale_target_ref, &target))
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
                        && o.spec.target.scale_ref().as_ref() == Some(&target)
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
        let target = campaign
            .spec
            .target
            .scale_ref()
            .ok_or_else(|| PlatformError::Local("the campaign names no target".into()))?;
        let labels = self.target_labels(ns, &target).await?;
        if labels.is_empty() {
            return Err(PlatformError::Local(format!(
                "{}/{} has no matchLabels selector",
                target.kind, target.name
            )));
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
