//! Two electors against a small fake API server (real HTTP, real `kube::Client`): one Lease
//! with resourceVersion optimistic locking, and a per-replica "network down" switch. Short
//! timings (3 s lease, 2 s renew deadline, 0.5 s retry) keep the scenarios to seconds.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::*;

const T: Timings = Timings {
    lease: Duration::from_secs(3),
    renew_deadline: Duration::from_secs(2),
    retry: Duration::from_millis(500),
};
const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/floodgate/leases";

#[derive(Default)]
struct Store {
    lease: Mutex<Option<Value>>,
    writes: Mutex<Vec<Value>>,
}

#[derive(Clone)]
struct Replica {
    store: Arc<Store>,
    down: Arc<AtomicBool>,
}

fn status(code: u16, reason: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code});
    (StatusCode::from_u16(code).expect("code"), Json(body)).into_response()
}

async fn read(State(r): State<Replica>) -> Response {
    if r.down.load(Ordering::SeqCst) {
        return status(503, "ServiceUnavailable");
    }
    match r.store.lease.lock().expect("lock").clone() {
        Some(l) => Json(l).into_response(),
        None => status(404, "NotFound"),
    }
}

/// POST (create) and PUT (replace) with the API server's optimistic lock.
async fn write(State(r): State<Replica>, Json(mut body): Json<Value>) -> Response {
    if r.down.load(Ordering::SeqCst) {
        return status(503, "ServiceUnavailable");
    }
    let mut lease = r.store.lease.lock().expect("lock");
    let current = lease
        .as_ref()
        .map(|l| l["metadata"]["resourceVersion"].clone());
    let sent = body["metadata"].get("resourceVersion").cloned();
    match (&current, &sent) {
        (None, None) => {}
        (Some(_), None) => return status(409, "AlreadyExists"),
        (Some(c), Some(s)) if c == s => {}
        _ => return status(409, "Conflict"),
    }
    let next = current
        .and_then(|v| v.as_str().and_then(|s| s.parse::<u64>().ok()))
        .unwrap_or(0)
        + 1;
    body["metadata"]["resourceVersion"] = json!(next.to_string());
    r.store.writes.lock().expect("lock").push(body.clone());
    *lease = Some(body.clone());
    Json(body).into_response()
}

/// A fake API server front for one replica, sharing `store` with the others.
async fn replica(store: &Arc<Store>, identity: &str) -> (Elector, Arc<AtomicBool>) {
    let r = Replica {
        store: store.clone(),
        down: Arc::default(),
    };
    let app = Router::new()
        .route(PATH, axum::routing::post(write))
        .route(&format!("{PATH}/floodgate-operator"), get(read).put(write))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = kube::Config::new(url.parse().expect("url"));
    let client = Client::try_from(config).expect("client");
    let api: Api<Lease> = Api::namespaced(client, "floodgate");
    let cfg = LeaseConfig {
        namespace: "floodgate".into(),
        name: "floodgate-operator".into(),
        identity: identity.into(),
        timings: T,
    };
    (Elector::new(api, cfg), r.down)
}

fn holder(store: &Store) -> Option<String> {
    store.lease.lock().expect("lock").as_ref().and_then(|l| {
        l["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    })
}

/// `a` leads (it came first); `b` follows in the background. Returns b's task, which
/// reports when b became the leader.
async fn a_leads_b_follows(store: &Arc<Store>) -> (Elector, tokio::task::JoinHandle<Instant>) {
    let (mut a, _) = replica(store, "a").await;
    a.acquire().await;
    let (mut b, _) = replica(store, "b").await;
    let b_task = tokio::spawn(async move {
        b.acquire().await;
        Instant::now()
    });
    (a, b_task)
}

#[tokio::test]
async fn exactly_one_leads_and_a_release_hands_over_within_one_retry() {
    let store = Arc::new(Store::default());
    let (mut a, b_task) = a_leads_b_follows(&store).await;
    // a keeps renewing for two lease durations; b never gets in.
    let kept = tokio::time::timeout(2 * T.lease, a.hold()).await;
    assert!(kept.is_err(), "a lost the lease: {kept:?}");
    assert_eq!(holder(&store).as_deref(), Some("a"));
    assert!(!b_task.is_finished(), "two leaders");

    let released_at = Instant::now();
    assert!(a.release().await.expect("release"), "a held the lease");
    let last = store
        .writes
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("write");
    assert_eq!(last["spec"]["holderIdentity"], "");
    assert_eq!(last["spec"]["leaseDurationSeconds"], 1);
    let b_led = tokio::time::timeout(T.lease, b_task)
        .await
        .expect("b took over")
        .expect("task");
    assert!(
        b_led - released_at <= T.retry + Duration::from_millis(300),
        "took {:?}",
        b_led - released_at
    );
    assert_eq!(holder(&store).as_deref(), Some("b"));
    let transitions =
        &store.lease.lock().expect("lock").clone().expect("lease")["spec"]["leaseTransitions"];
    assert_eq!(transitions, 1);
    assert!(
        !a.release().await.expect("release"),
        "b's lease is not a's to release"
    );
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_within_one_lease_duration() {
    let store = Arc::new(Store::default());
    let (mut a, b_task) = a_leads_b_follows(&store).await;
    let _ = tokio::time::timeout(T.lease, a.hold()).await;
    let crashed = Instant::now();
    drop(a); // SIGKILL: no release
    let b_led = tokio::time::timeout(2 * T.lease, b_task)
        .await
        .expect("b took over")
        .expect("task");
    let took = b_led - crashed;
    assert!(
        took <= T.lease + Duration::from_millis(300),
        "took {took:?}"
    );
    assert!(
        took >= T.renew_deadline - T.retry,
        "took over a live lease after {took:?}"
    );
}

#[tokio::test]
async fn a_partitioned_leader_steps_down_before_the_follower_takes_over() {
    let store = Arc::new(Store::default());
    let (mut a, a_down) = replica(&store, "a").await;
    a.acquire().await;
    let (mut b, _) = replica(&store, "b").await;
    let b_task = tokio::spawn(async move {
        b.acquire().await;
        Instant::now()
    });
    // a renews for a lease duration, then loses its connection to the API server.
    tokio::spawn(async move {
        tokio::time::sleep(T.lease).await;
        a_down.store(true, Ordering::SeqCst);
    });
    let lost = tokio::time::timeout(3 * T.lease, a.hold())
        .await
        .expect("a steps down");
    let a_stopped = Instant::now();
    assert!(lost.to_string().contains("renew deadline"), "{lost}");
    let b_led = tokio::time::timeout(2 * T.lease, b_task)
        .await
        .expect("b took over")
        .expect("task");
    assert!(
        b_led > a_stopped,
        "b led {:?} before a stopped",
        a_stopped - b_led
    );
}

/// SIGTERM while leading: the controllers stop first, then the Lease is released, and
/// `floodgate_operator_leader` goes 1 → 0.
#[tokio::test]
async fn shutdown_stops_the_controllers_then_releases_the_lease() {
    use futures::FutureExt;
    let store = Arc::new(Store::default());
    let (mut a, _) = replica(&store, "a").await;
    let metrics = crate::telemetry::Metrics::default();
    let ready = AtomicBool::new(true);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown: Shutdown = rx.map(|_| ()).boxed().shared();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (seen2, store2) = (seen.clone(), store.clone());
    let controllers = move |stop: Shutdown| async move {
        seen2
            .lock()
            .expect("lock")
            .push(format!("running, holder {:?}", holder(&store2)));
        stop.await;
        tokio::time::sleep(Duration::from_millis(200)).await; // in-flight reconciles
        seen2
            .lock()
            .expect("lock")
            .push(format!("stopped, holder {:?}", holder(&store2)));
        Ok(())
    };
    let leading = Leading {
        metrics: &metrics,
        ready: &ready,
        grace: Duration::from_secs(5),
    };
    let run = lead(&mut a, controllers, shutdown, leading);
    let signal = async {
        tokio::time::sleep(T.retry * 3).await;
        assert!(metrics.encode().contains("floodgate_operator_leader 1"));
        tx.send(()).expect("send");
    };
    let (result, ()) = tokio::join!(run, signal);
    result.expect("clean shutdown");
    assert_eq!(
        *seen.lock().expect("lock"),
        ["running, holder Some(\"a\")", "stopped, holder Some(\"a\")"]
    );
    assert_eq!(
        holder(&store),
        None,
        "released after the controllers stopped"
    );
    assert!(metrics.encode().contains("floodgate_operator_leader 0"));
    assert!(!ready.load(Ordering::Relaxed));
}
