//! One test per expected API call sequence (see [`super::fixtures`]).

use std::sync::Arc;

use axum::{Router, routing::get};
use kube::runtime::controller::Action;

use super::{
    controller::{reconcile_campaign, reconcile_queue_config},
    fixtures::{
        Scenario, campaign, hpa_on_target, queue_config, test_context, test_context_with,
        unreachable_redis,
    },
};
use crate::{phase::ACTIVE_RESYNC, store::runtime_doc};

/// A stand-in app pod: the gauges and histogram a real app exports.
async fn app_metrics(waiting: u64) -> u16 {
    let text = format!(
        "# TYPE floodgate_queue_waiting gauge\nfloodgate_queue_waiting{{queue=\"concert-42\"}} {waiting}\n\
         # TYPE floodgate_http_request_duration_seconds histogram\n\
         floodgate_http_request_duration_seconds_bucket{{route=\"/q\",le=\"0.1\"}} 90\n\
         floodgate_http_request_duration_seconds_bucket{{route=\"/q\",le=\"+Inf\"}} 100\n# EOF\n"
    );
    let app = Router::new().route("/metrics", get(move || async move { text.clone() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn a_new_campaign_gets_the_finalizer_first() {
    let mut c = campaign(1);
    c.metadata.finalizers = None;
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let mock = server.run(Scenario::FinalizerCreation(c.clone()));
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn an_active_campaign_scales_with_its_field_manager_and_reports_status() {
    let c = campaign(app_metrics(50_000).await);
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    // 50,000 waiting / 2000 per replica = 25, a burst (>= 2 × the 2 running): panic follows
    // it at once, past the scale-up step.
    let mock = server.run(Scenario::ScaleUp {
        campaign: c.clone(),
        from: 2,
        to: 25,
    });
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(ACTIVE_RESYNC));
    let metrics = ctx.metrics.encode();
    assert!(
        metrics
            .contains("floodgate_operator_desired_replicas{campaign=\"default/xmas-tickets\"} 25"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_operator_panic{campaign=\"default/xmas-tickets\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("floodgate_operator_reconciles_total{kind=\"Campaign\"} 1"),
        "every reconcile is counted: {metrics}"
    );
    let doc = runtime_doc::read(&ctx.redis)
        .await
        .expect("read")
        .expect("published");
    assert_eq!(doc.queues["concert-42"].max_active_users, 500);
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn a_volatile_eviction_policy_is_refused_without_touching_redis() {
    // volatile-* evicts keys with a TTL, and the waiting room's keys carry one.
    let mut c = campaign(app_metrics(0).await);
    c.spec.redis = Some(floodgate_crds::v1alpha1::RedisSpec {
        maxmemory: Some("1gb".into()),
        maxmemory_policy: Some(floodgate_crds::v1alpha1::MaxmemoryPolicy::VolatileLru),
        ttls: None,
    });
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let _config = crate::store::testing::CONFIG_LOCK.lock().await;
    let before = crate::store::memory::read(&ctx.redis)
        .await
        .expect("CONFIG GET");
    let mock = server.run(Scenario::RefusedEvictionPolicy(c.clone()));
    reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        crate::store::memory::read(&ctx.redis)
            .await
            .expect("CONFIG GET"),
        before
    );
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn an_hpa_on_the_same_deployment_is_a_conflict() {
    let c = campaign(1);
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let mock = server.run(Scenario::Conflict(c.clone()));
    reconcile_campaign(Arc::new(c.clone()), ctx.clone())
        .await
        .expect("reconcile");
    // the FloodgateOperatorTargetContested alert's series
    let series = format!(
        "floodgate_operator_conflict{{campaign=\"{}\"}} 1",
        crate::reconcile::key_of(&c)
    );
    assert!(
        ctx.metrics.encode().lines().any(|l| l == series),
        "{series} not in {}",
        ctx.metrics.encode()
    );
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn a_pass_with_nothing_new_writes_no_status() {
    let c = campaign(1);
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let first = c.clone();
    let mock = tokio::spawn(async move {
        server
            .hpa_list(vec![hpa_on_target()])
            .await
            .event("Conflict", "Warning")
            .await
            .event("ConfigPublished", "Normal")
            .await
            .status_patch(&first, move |st| {
                let _ = tx.send(st.clone());
            })
            .await
            // The second pass: the same HPA, the same document, the same status: one call.
            .hpa_list(vec![hpa_on_target()])
            .await
            .expect_no_more()
            .await;
    });
    reconcile_campaign(Arc::new(c.clone()), ctx.clone())
        .await
        .expect("first reconcile");
    let mut again = c;
    again.status = Some(serde_json::from_value(rx.await.expect("status")).expect("status"));
    reconcile_campaign(Arc::new(again), ctx.clone())
        .await
        .expect("second reconcile");
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn status_writes_do_not_wake_a_reconcile() {
    use futures::StreamExt;
    let c = campaign(1);
    let mut versions = vec![c.clone()];
    // Every resync writes the status (new resourceVersion, same generation): 100 of them.
    for i in 0..100 {
        let mut v = c.clone();
        v.metadata.resource_version = Some(format!("{}", 100 + i));
        v.status = Some(floodgate_crds::v1alpha1::CampaignStatus {
            observed: Some(floodgate_crds::v1alpha1::ObservedSignals {
                waiting: Some(i),
                p95: None,
                at: Some(chrono::Utc::now()),
            }),
            ..Default::default()
        });
        versions.push(v);
    }
    let mut edited = versions[100].clone();
    edited.metadata.generation = Some(2);
    let mut unfinalized = edited.clone();
    unfinalized.metadata.finalizers = None;
    let mut deleting = unfinalized.clone();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    versions.extend([edited, unfinalized, deleting]);
    let woken: Vec<_> =
        super::controller::reconcile_triggers(futures::stream::iter(versions.into_iter().map(Ok)))
            .collect()
            .await;
    // The first sight, the spec edit, the finalizer change and the deletion mark.
    assert_eq!(woken.len(), 4, "status writes woke reconciles");
}

#[tokio::test]
async fn an_older_campaign_on_the_same_deployment_is_a_conflict_too() {
    use crate::reconcile::Platform;
    let mut older = campaign(1);
    older.metadata.name = Some("older".into());
    older.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
    ));
    let mut newer = campaign(1);
    newer.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let (ctx, server) = test_context(vec![older.clone(), newer.clone()], vec![]).await;
    // Only the HPA list reaches the API server; the campaigns come from the cache.
    let mock = tokio::spawn(server.answer_empty_hpa_list());
    let found = ctx.platform.competitors(&newer).await.expect("competitors");
    assert_eq!(found, vec!["Campaign/older".to_owned()]);
    // The older one is not contested by the newer one.
    drop(ctx);
    mock.await.expect("mock");
}

/// A Campaign being deleted after it scaled its Deployment from 3 to 10 (and, when given,
/// changed Redis from `redis_before`).
fn deleted_campaign(
    redis_before: Option<floodgate_crds::v1alpha1::RedisApplied>,
) -> floodgate_crds::v1alpha1::Campaign {
    let mut c = campaign(1);
    c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    c.status = Some(floodgate_crds::v1alpha1::CampaignStatus {
        replicas: Some(floodgate_crds::v1alpha1::ReplicaStatus {
            current: 10,
            desired: 10,
            reason: String::new(),
            before: Some(3),
        }),
        redis_before,
        ..Default::default()
    });
    c
}

#[tokio::test]
async fn deleting_a_campaign_restores_replicas_and_unpublishes_its_queues() {
    let c = deleted_campaign(None);
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    // The queue was published while the campaign ran.
    let live = crate::merge::merge(
        &[crate::merge::QueueSource {
            name: "default/concert-42",
            spec: &queue_config().spec,
            retired: false,
        }],
        &[],
    );
    runtime_doc::publish(&ctx.redis, &live.config)
        .await
        .expect("seed");
    let mock = server.run(Scenario::Cleanup {
        campaign: c.clone(),
        current: 10,
        before: 3,
    });
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    let doc = runtime_doc::read(&ctx.redis)
        .await
        .expect("read")
        .expect("doc");
    assert!(
        doc.queues.is_empty(),
        "its queue left the runtime config: {doc:?}"
    );
    assert_eq!(doc.version, 2);
    // And it stays out once the campaign object is gone: the QueueConfig is retired.
    let mut conn = ctx.redis.conn.clone();
    let retired: Vec<String> = redis::cmd("SMEMBERS")
        .arg(ctx.redis.key(crate::reconcile::runtime_sync::RETIRED_KEY))
        .query_async(&mut conn)
        .await
        .expect("smembers");
    assert_eq!(retired, ["default/concert-42"]);
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn an_invalid_campaign_waits_for_a_change() {
    let mut c = campaign(1);
    c.spec.scaling.min_replicas = 50;
    let (ctx, server) = test_context(vec![c.clone()], vec![]).await;
    let mock = server.run(Scenario::InvalidSpec(c.clone()));
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        action,
        Action::await_change(),
        "no retry loop on a spec only a user can fix"
    );
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn a_queue_config_is_published_without_any_campaign() {
    let mut q = queue_config();
    q.metadata.finalizers = Some(vec![super::controller::QUEUE_FINALIZER.into()]);
    q.metadata.generation = Some(4);
    let (ctx, server) = test_context(vec![], vec![q.clone()]).await;
    let mock = server.run(Scenario::QueueStatus(q.clone()));
    let action = reconcile_queue_config(Arc::new(q), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        action,
        Action::requeue(crate::reconcile::queue_config::QUEUE_RESYNC)
    );
    let doc = runtime_doc::read(&ctx.redis)
        .await
        .expect("read")
        .expect("doc");
    assert!(doc.queues.contains_key("concert-42"));
    drop(ctx);
    mock.await.expect("scenario");
}

/// The campaign's Deployment does not exist.
fn without_target(mut c: floodgate_crds::v1alpha1::Campaign) -> floodgate_crds::v1alpha1::Campaign {
    c.status = None;
    c
}

#[tokio::test]
async fn a_missing_target_is_a_state_reported_once_and_rechecked_within_seconds() {
    let c = without_target(campaign(1));
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let first = c.clone();
    let mock = tokio::spawn(async move {
        let v = server
            .hpa_list(vec![])
            .await
            .get_scale_missing()
            .await
            .event("TargetNotFound", "Warning")
            .await
            .event("ConfigPublished", "Normal")
            .await
            .status_patch(&first, move |st| {
                let _ = tx.send(st.clone());
            })
            .await;
        // Still missing on the next pass: no second Warning, no status change to write.
        v.hpa_list(vec![])
            .await
            .get_scale_missing()
            .await
            .expect_no_more()
            .await;
    });
    let action = reconcile_campaign(Arc::new(c.clone()), ctx.clone())
        .await
        .expect("a 404 on the target is not a reconcile error");
    let retry = crate::reconcile::campaign::TARGET_RETRY;
    assert!(retry <= std::time::Duration::from_secs(5));
    assert_eq!(action, Action::requeue(retry));
    let status = rx.await.expect("status");
    super::fixtures::assert_reason(&status, "Ready", "False", "TargetNotFound");
    let mut again = c;
    again.status = Some(serde_json::from_value(status).expect("status"));
    let action = reconcile_campaign(Arc::new(again), ctx.clone())
        .await
        .expect("second pass");
    assert_eq!(action, Action::requeue(retry));
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn a_scheduled_campaign_is_not_ready_without_its_target() {
    let mut c = without_target(campaign(1));
    c.spec.schedule.starts_at = Some(chrono::Utc::now() + chrono::Duration::hours(2));
    c.spec.schedule.ends_at = Some(chrono::Utc::now() + chrono::Duration::hours(3));
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let mock = server.run(Scenario::TargetNotFound {
        campaign: c.clone(),
        active: false,
    });
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        action,
        Action::requeue(crate::reconcile::campaign::TARGET_RETRY)
    );
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn an_active_campaign_without_its_target_reports_it() {
    let c = without_target(campaign(1));
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let mock = server.run(Scenario::TargetNotFound {
        campaign: c.clone(),
        active: true,
    });
    reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn nothing_is_scaled_when_the_originals_cannot_be_saved_first() {
    let c = campaign(app_metrics(50_000).await);
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    let mock = server.run(Scenario::TakeoverWriteFails);
    let err = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect_err("the takeover status write failed");
    assert!(err.to_string().contains("writing status"), "{err}");
    drop(ctx);
    mock.await.expect("no scale patch after the failed write");
}

#[tokio::test]
async fn an_ended_campaign_steps_down_with_its_scale_down_policy() {
    let mut c = campaign(1);
    c.spec.schedule.starts_at = Some(chrono::Utc::now() - chrono::Duration::hours(2));
    c.spec.schedule.ends_at = Some(chrono::Utc::now() - chrono::Duration::seconds(10));
    c.status = Some(floodgate_crds::v1alpha1::CampaignStatus {
        phase: Some(floodgate_crds::v1alpha1::Phase::Ended),
        replicas: Some(floodgate_crds::v1alpha1::ReplicaStatus {
            current: 10,
            desired: 10,
            reason: String::new(),
            before: Some(3),
        }),
        ..Default::default()
    });
    let (ctx, server) = test_context(vec![c.clone()], vec![queue_config()]).await;
    // From 10 toward 3: the example's scale-down step allows min(10 - 2, 80 % of 10) = 8.
    let mock = server.run(Scenario::EndedStepDown {
        campaign: c.clone(),
        from: 10,
        to: 8,
        before: 3,
    });
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("reconcile");
    assert_eq!(
        action,
        Action::requeue(ACTIVE_RESYNC),
        "resyncs until restored"
    );
    drop(ctx);
    mock.await.expect("scenario");
}

#[tokio::test]
async fn deletion_completes_without_the_target_or_redis() {
    let c = deleted_campaign(Some(floodgate_crds::v1alpha1::RedisApplied {
        maxmemory: "0".into(),
        maxmemory_policy: "noeviction".into(),
    }));
    let redis = unreachable_redis().await;
    let (ctx, server) = test_context_with(vec![c.clone()], vec![queue_config()], redis);
    let mock = server.run(Scenario::CleanupIncomplete(c.clone()));
    let started = std::time::Instant::now();
    let action = reconcile_campaign(Arc::new(c), ctx.clone())
        .await
        .expect("the finalizer completes anyway");
    assert_eq!(action, Action::await_change());
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(ctx);
    mock.await.expect("scenario");
}
