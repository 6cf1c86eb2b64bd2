//! A mocked API server behind a real `kube::Client` (kube-rs controller-rs's
//! "ApiServerVerifier" pattern): each [`Scenario`] is the exact sequence of calls one
//! reconcile must make, asserting method, path, query, content type and body, and answering
//! like the API server would. Anything else the reconcile sends fails the test.

use std::sync::Arc;

use chrono::Utc;
use floodgate_crds::v1alpha1::{Campaign, QueueConfig};
use http::{Request, Response};
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

pub struct ApiServerVerifier(pub(super) ApiServerHandle);

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
    /// An Active Campaign asking for an evicting policy (anything but `noeviction`): nothing to scale, the
    /// policy refused with a Warning and `RedisConfigured=False`, no CONFIG SET issued.
    RefusedEvictionPolicy(Campaign),
    /// A standalone QueueConfig: published (Event), then its status.
    QueueStatus(QueueConfig),
    /// A campaign whose Deployment does not exist: a 404 on the scale, one TargetNotFound
    /// Warning, `Ready=False/TargetNotFound`; `active` campaigns check conflicts first.
    TargetNotFound { campaign: Campaign, active: bool },
    /// A first takeover whose status write (carrying `before`) fails: nothing else is sent.
    TakeoverWriteFails,
    /// An Ended campaign at `from` replicas, pre-campaign `before`: one scale-down step to
    /// `to`, `Ready=True/Restoring`, `before` kept.
    EndedStepDown {
        campaign: Campaign,
        from: u32,
        to: u32,
        before: u32,
    },
    /// A deleted campaign whose Deployment is gone and whose Redis is unreachable: one
    /// RestoreIncomplete Warning, then the finalizer is removed anyway.
    CleanupIncomplete(Campaign),
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
    c.spec.schedule.starts_at = Some(Utc::now() - chrono::Duration::hours(1));
    c.spec.schedule.ends_at = Some(Utc::now() + chrono::Duration::hours(1));
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
    test_context_with(campaigns, queues, testing::target("cluster").await)
}

/// A Redis that answered once and is gone: a private `redis-server`, connected, then killed.
pub async fn unreachable_redis() -> crate::store::RedisTarget {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed for this test");
    let url = format!("redis://127.0.0.1:{port}");
    // No reconnect retries, so each command fails at once rather than after the production
    // backoff (about 6 s per command).
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(0)
        .set_connection_timeout(Some(std::time::Duration::from_millis(500)));
    let mut target = None;
    for _ in 0..100 {
        let client = redis::Client::open(url.as_str()).expect("url");
        if let Ok(conn) =
            redis::aio::ConnectionManager::new_with_config(client, config.clone()).await
        {
            target = Some(crate::store::RedisTarget {
                conn: floodgate_crds::redis_conn::RedisConn::Single(conn),
                prefix: "fgtest:gone:".into(),
                last_version: Default::default(),
                address: Default::default(),
            });
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    target.expect("the private redis-server came up")
}

pub fn test_context_with(
    campaigns: Vec<Campaign>,
    queues: Vec<QueueConfig>,
    redis: crate::store::RedisTarget,
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
    let ctx = Context::new(
        platform,
        redis,
        Box::new(AppMetricsDepth),
        Arc::new(Metrics::default()),
    );
    (Arc::new(ctx), ApiServerVerifier(handle))
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
                    // The originals reach the status before the scale patch.
                    .status_patch(&campaign, move |status| {
                        assert_eq!(status["replicas"]["before"], from);
                        assert_eq!(status["replicas"]["desired"], from, "nothing decided yet");
                    })
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
                self.hpa_list(vec![hpa_on_target()])
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
            Scenario::RefusedEvictionPolicy(campaign) => {
                self.hpa_list(vec![])
                    .await
                    .get_scale(2)
                    .await
                    .status_patch(&campaign, |status| {
                        assert_eq!(status["replicas"]["before"], 2);
                        assert!(
                            status["redisBefore"].is_null(),
                            "a refused policy changes nothing"
                        );
                    })
                    .await
                    .pods_of_deployment()
                    .await
                    .event("EvictionPolicyRefused", "Warning")
                    .await
                    .event("ConfigPublished", "Normal")
                    .await
                    .status_patch(&campaign, |status| {
                        assert_eq!(
                            status["replicas"]["desired"], 2,
                            "an empty queue keeps minReplicas"
                        );
                        assert_condition(status, "RedisConfigured", "False");
                        let c = status["conditions"]
                            .as_array()
                            .and_then(|cs| cs.iter().find(|c| c["type"] == "RedisConfigured"));
                        assert_eq!(
                            c.map(|c| c["reason"].clone()),
                            Some(json!("EvictionPolicyRefused"))
                        );
                        assert!(
                            status["redisApplied"].is_null() && status["redisBefore"].is_null()
                        );
                    })
                    .await
            }
            Scenario::TargetNotFound { campaign, active } => {
                let v = if active {
                    self.hpa_list(vec![]).await
                } else {
                    self
                };
                v.get_scale_missing()
                    .await
                    .event("TargetNotFound", "Warning")
                    .await
                    .event("ConfigPublished", "Normal")
                    .await
                    .status_patch(&campaign, |status| {
                        assert_reason(status, "Ready", "False", "TargetNotFound");
                        let ready = condition(status, "Ready");
                        let msg = ready["message"].as_str().unwrap_or("");
                        assert!(msg.contains("default/floodgate-app"), "{msg}");
                        assert!(
                            status["replicas"].is_null(),
                            "nothing decided without a target"
                        );
                    })
                    .await
            }
            Scenario::TakeoverWriteFails => {
                self.hpa_list(vec![])
                    .await
                    .get_scale(2)
                    .await
                    .status_patch_fails()
                    .await
            }
            Scenario::EndedStepDown {
                campaign,
                from,
                to,
                before,
            } => {
                self.get_scale(from)
                    .await
                    .patch_scale(to)
                    .await
                    .event("Scaled", "Normal")
                    .await
                    .event("ConfigPublished", "Normal")
                    .await
                    .status_patch(&campaign, move |status| {
                        assert_eq!(status["phase"], "Ended");
                        assert_eq!(status["replicas"]["desired"], to);
                        assert_eq!(status["replicas"]["before"], before, "not done yet");
                        assert_reason(status, "Ready", "True", "Restoring");
                    })
                    .await
            }
            Scenario::CleanupIncomplete(campaign) => {
                self.get_scale_missing()
                    .await
                    .event("RestoreIncomplete", "Warning")
                    .await
                    .finalizer_removed(&campaign)
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
}

/// An HPA scaling the campaign's Deployment.
pub(super) fn hpa_on_target() -> Value {
    json!({"metadata": {"name": "app-hpa", "namespace": NS},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
                 "minReplicas": 1, "maxReplicas": 5}})
}

pub(super) fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let found = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let Some(c) = found else {
        panic!("no {type_} condition in {status}")
    };
    c
}

pub(super) fn assert_reason(status: &Value, type_: &str, expected: &str, reason: &str) {
    let c = condition(status, type_);
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!(expected), &json!(reason)),
        "{c}"
    );
}

pub(super) fn assert_condition(status: &Value, type_: &str, expected: &str) {
    let found = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_));
    let Some(c) = found else {
        panic!("no {type_} condition in {status}")
    };
    assert_eq!(c["status"], expected, "{type_}: {c}");
}
