//! A mocked API server behind a real `kube::Client` (kube-rs controller-rs's
//! "ApiServerVerifier" pattern): each [`Scenario`] is the exact sequence of calls one
//! reconcile must make, asserting method, path, query, content type and body, and answering
//! like the API server would. Anything else the reconcile sends fails the test.

use std::sync::Arc;

use chrono::Utc;
use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use http::{Method, Request, Response};
use kube::{
    Client,
    client::Body,
    runtime::{reflector, watcher},
};
use serde_json::{Value, json};

use super::{controller::Ctx, platform::KubePlatform};
use crate::{
    observe::depth::AppMetricsDepth, reconcile::Context, store::testing, telemetry::Metrics,
};

type ApiServerHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Responder = tower_test::mock::SendResponse<Response<Body>>;

pub struct ApiServerVerifier(ApiServerHandle);

/// One expected call sequence each.
pub enum Scenario {
    /// A new Campaign: the only call is the JSON patch adding the finalizer.
    FinalizerCreation(Campaign),
    /// An Active Campaign whose queue wants more pods: scale patched, Events, status.
    ScaleUp {
        campaign: Campaign,
        from: u32,
        to: u32,
    },
    /// An HPA already scales the Deployment: no scale call, a Conflict condition and Event.
    Conflict(Campaign),
    /// A deleted Campaign: replicas restored, then the finalizer removed.
    Cleanup {
        campaign: Campaign,
        current: u32,
        before: u32,
    },
    /// An invalid Campaign: a Warning Event and a status saying why, nothing else.
    InvalidSpec(Campaign),
    /// A standalone QueueConfig: published (Event), then its status.
    QueueStatus(QueueConfig),
}

pub const NS: &str = "default";
pub const DEPLOYMENT: &str = "floodgate-app";

/// The example Campaign, Active now, with the finalizer, no Redis memory settings (they are
/// global to a Redis and covered by the real-Redis tests) and scraping `metrics_port`.
pub fn campaign(metrics_port: u16) -> Campaign {
    let mut c: Campaign =
        serde_yaml::from_str(include_str!("../../../crds/examples/campaign.yaml"))
            .expect("example");
    c.metadata.namespace = Some(NS.into());
    c.metadata.uid = Some("8f3e-campaign".into());
    c.metadata.generation = Some(1);
    c.metadata.finalizers = Some(vec![super::controller::CAMPAIGN_FINALIZER.into()]);
    c.spec.schedule.starts_at = Utc::now() - chrono::Duration::hours(1);
    c.spec.schedule.ends_at = Utc::now() + chrono::Duration::hours(1);
    c.spec.redis = None;
    c.spec
        .scaling
        .metrics
        .scrape
        .as_mut()
        .expect("example scrapes")
        .port = i32::from(metrics_port);
    c
}

pub fn queue_config() -> QueueConfig {
    let mut q: QueueConfig =
        serde_yaml::from_str(include_str!("../../../crds/examples/queueconfig.yaml"))
            .expect("example");
    q.metadata.namespace = Some(NS.into());
    q
}

/// A context whose Client talks to the returned verifier and whose caches hold `campaigns`
/// and `queues`; Redis is the real test Redis under a fresh prefix.
pub async fn test_context(
    campaigns: Vec<Campaign>,
    queues: Vec<QueueConfig>,
) -> (Arc<Ctx>, ApiServerVerifier) {
    let (mock_service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock_service, NS);
    let (campaign_store, mut cw) = reflector::store();
    for c in campaigns {
        cw.apply_watcher_event(&watcher::Event::Apply(c));
    }
    let (queue_store, mut qw) = reflector::store();
    for q in queues {
        qw.apply_watcher_event(&watcher::Event::Apply(q));
    }
    let platform = KubePlatform::new(client, campaign_store, queue_store);
    let redis = testing::target("cluster").await;
    let ctx = Context::new(
        platform,
        redis,
        Box::new(AppMetricsDepth),
        Arc::new(Metrics::default()),
    );
    (Arc::new(ctx), ApiServerVerifier(handle))
}

fn respond(send: Responder, value: &Value) {
    let body = serde_json::to_vec(value).expect("json");
    send.send_response(
        Response::builder()
            .body(Body::from(body))
            .expect("response"),
    );
}

async fn json_body(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

fn scale(replicas: u32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": DEPLOYMENT, "namespace": NS}, "spec": {"replicas": replicas}, "status": {"replicas": replicas}})
}

impl ApiServerVerifier {
    /// Plays the scenario in the background; the returned task fails on any deviation and on
    /// any request left over once the client is dropped.
    pub fn run(self, scenario: Scenario) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let verifier =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.play(scenario))
                    .await
                    .expect("scenario timed out");
            verifier.expect_no_more().await;
        })
    }

    async fn play(self, scenario: Scenario) -> Self {
        match scenario {
            Scenario::FinalizerCreation(c) => self.finalizer_added(&c).await,
            Scenario::ScaleUp { campaign, from, to } => {
                self.hpa_list(vec![])
                    .await
                    .get_scale(from)
                    .await
                    .pods_of_deployment()
                    .await
                    .patch_scale(to)
                    .await
                    .event("Scaled", "Normal")
                    .await
                    .event("PanicStarted", "Normal")
                    .await
                    .event("ConfigPublished", "Normal")
                    .await
                    .status_patch(&campaign, move |status| {
                        assert_eq!(status["phase"], "Active");
                        assert_eq!(status["replicas"]["current"], from);
                        assert_eq!(status["replicas"]["desired"], to);
                        assert_eq!(
                            status["replicas"]["before"], from,
                            "pre-campaign count recorded"
                        );
                        assert_eq!(status["observed"]["waiting"], 50_000);
                        assert_eq!(status["panic"], true);
                        assert_eq!(status["publishedVersion"], 1);
                        assert_condition(status, "MetricsAvailable", "True");
                        assert_condition(status, "Conflict", "False");
                        assert_condition(status, "ConfigPublished", "True");
                        assert_condition(status, "Ready", "True");
                    })
                    .await
            }
            Scenario::Conflict(campaign) => {
                let hpa = json!({"metadata": {"name": "app-hpa", "namespace": NS},
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
                             "minReplicas": 1, "maxReplicas": 5}});
                self.hpa_list(vec![hpa])
                    .await
                    .event("Conflict", "Warning")
                    .await
                    .event("ConfigPublished", "Normal")
                    .await
                    .status_patch(&campaign, |status| {
                        assert_condition(status, "Conflict", "True");
                        assert_condition(status, "Ready", "False");
                        assert!(
                            status["replicas"].is_null(),
                            "nothing decided while contested"
                        );
                    })
                    .await
            }
            Scenario::InvalidSpec(campaign) => {
                self.event("InvalidSpec", "Warning")
                    .await
                    .status_patch(&campaign, |status| {
                        assert_condition(status, "Ready", "False");
                        let ready = status["conditions"]
                            .as_array()
                            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
                        assert_eq!(
                            ready.map(|c| c["reason"].clone()),
                            Some(json!("InvalidSpec"))
                        );
                    })
                    .await
            }
            Scenario::QueueStatus(queue) => {
                self.event_for("QueueConfig", "ConfigPublished", "Normal")
                    .await
                    .queue_status_patch(&queue)
                    .await
            }
            Scenario::Cleanup {
                campaign,
                current,
                before,
            } => {
                self.get_scale(current)
                    .await
                    .patch_scale(before)
                    .await
                    .event("Restored", "Normal")
                    .await
                    .finalizer_removed(&campaign)
                    .await
            }
        }
    }

    async fn next(&mut self) -> (Request<Body>, Responder) {
        self.0
            .next_request()
            .await
            .expect("the reconcile stopped calling the API server too early")
    }

    async fn expect_no_more(mut self) {
        if let Some((req, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }

    async fn finalizer_added(mut self, c: &Campaign) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            format!("/apis/floodgate.dev/v1alpha1/namespaces/{NS}/campaigns/xmas-tickets")
        );
        let body = json_body(req).await;
        assert_eq!(
            body,
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                   {"op": "add", "path": "/metadata/finalizers", "value": ["floodgate.dev/campaign"]}])
        );
        let mut added = c.clone();
        added.metadata.finalizers = Some(vec!["floodgate.dev/campaign".into()]);
        respond(send, &serde_json::to_value(&added).expect("json"));
        self
    }

    async fn hpa_list(mut self, items: Vec<Value>) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri().path(),
            format!("/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers")
        );
        respond(
            send,
            &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": items}),
        );
        self
    }

    async fn get_scale(mut self, replicas: u32) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri().path(),
            format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}/scale")
        );
        respond(send, &scale(replicas));
        self
    }

    /// The Deployment's selector, then its Running pods (one, on 127.0.0.1, where the test's
    /// metrics server listens).
    async fn pods_of_deployment(mut self) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri().path(),
            format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}")
        );
        respond(
            send,
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": DEPLOYMENT, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": DEPLOYMENT}}, "template": {}}}),
        );
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), format!("/api/v1/namespaces/{NS}/pods"));
        assert!(
            req.uri()
                .query()
                .unwrap_or("")
                .contains("labelSelector=app%3Dfloodgate-app"),
            "{}",
            req.uri()
        );
        respond(
            send,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": "app-1", "namespace": NS}, "status": {"phase": "Running", "podIP": "127.0.0.1"}},
            {"metadata": {"name": "app-2", "namespace": NS}, "status": {"phase": "Pending"}}]}),
        );
        self
    }

    async fn patch_scale(mut self, replicas: u32) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            format!("/apis/apps/v1/namespaces/{NS}/deployments/{DEPLOYMENT}/scale")
        );
        assert!(
            req.uri()
                .query()
                .unwrap_or("")
                .contains("fieldManager=floodgate-operator"),
            "{}",
            req.uri()
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(
            json_body(req).await,
            json!({"spec": {"replicas": replicas}})
        );
        respond(send, &scale(replicas));
        self
    }

    async fn event(self, reason: &str, type_: &str) -> Self {
        self.event_for("Campaign", reason, type_).await
    }

    async fn event_for(mut self, kind: &str, reason: &str, type_: &str) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri().path(),
            format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
        );
        let body = json_body(req).await;
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["type"], type_, "{body}");
        assert_eq!(body["regarding"]["kind"], kind);
        assert_eq!(body["reportingController"], "floodgate-operator");
        respond(send, &body);
        self
    }

    async fn status_patch(mut self, c: &Campaign, check: impl FnOnce(&Value)) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            format!("/apis/floodgate.dev/v1alpha1/namespaces/{NS}/campaigns/xmas-tickets/status")
        );
        let query = req.uri().query().unwrap_or("").to_owned();
        assert!(
            query.contains("fieldManager=floodgate-operator") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let body = json_body(req).await;
        assert_eq!(body["kind"], "Campaign");
        check(&body["status"]);
        let mut updated = serde_json::to_value(c).expect("json");
        updated["status"] = body["status"].clone();
        respond(send, &updated);
        self
    }

    async fn queue_status_patch(mut self, q: &QueueConfig) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            format!("/apis/floodgate.dev/v1alpha1/namespaces/{NS}/queueconfigs/concert-42/status")
        );
        assert!(
            req.uri()
                .query()
                .unwrap_or("")
                .contains("fieldManager=floodgate-operator"),
            "{}",
            req.uri()
        );
        let body = json_body(req).await;
        let status = &body["status"];
        assert_eq!(status["observedGeneration"], 4);
        assert_eq!(status["publishedVersion"], 1);
        assert_condition(status, "ConfigPublished", "True");
        assert_condition(status, "Ready", "True");
        let mut updated = serde_json::to_value(q).expect("json");
        updated["status"] = status.clone();
        respond(send, &updated);
        self
    }

    /// For tests that call one platform method: answers its single HPA list.
    pub async fn answer_empty_hpa_list(self) {
        self.hpa_list(vec![]).await.expect_no_more().await;
    }

    async fn finalizer_removed(mut self, c: &Campaign) -> Self {
        let (req, send) = self.next().await;
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(
            req.uri().path(),
            format!("/apis/floodgate.dev/v1alpha1/namespaces/{NS}/campaigns/xmas-tickets")
        );
        assert_eq!(
            json_body(req).await,
            json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "floodgate.dev/campaign"},
                   {"op": "remove", "path": "/metadata/finalizers/0"}])
        );
        let mut gone = c.clone();
        gone.metadata.finalizers = None;
        respond(send, &serde_json::to_value(&gone).expect("json"));
        self
    }
}

fn assert_condition(status: &Value, type_: &str, expected: &str) {
    let found = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let Some(c) = found else {
        panic!("no {type_} condition in {status}")
    };
    assert_eq!(c["status"], expected, "{type_}: {c}");
}
