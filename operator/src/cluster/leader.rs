//! Leader election on a `coordination.k8s.io/v1` Lease, so only one operator replica scales
//! Deployments and writes the runtime document. Acquire by create-or-replace with the Lease's
//! resourceVersion (the API server's optimistic lock), renew every few seconds, and stop
//! (the process exits and Kubernetes restarts it as a follower) when renewing fails for
//! longer than the lease lasts.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{PostParams, entry::Entry},
};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

/// Pure: may `me` take or renew the lease at `now`?
pub fn may_acquire(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map_or(0, |t| t.0.as_second());
            let ttl = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            renewed + ttl < now.as_second()
        }
    }
}

/// One attempt: true when we hold the lease afterwards.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let ttl = i32::try_from(cfg.duration.as_secs()).unwrap_or(15);
    let entry = api.entry(&cfg.name).await?;
    let result = match entry {
        Entry::Vacant(v) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(ttl),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            v.insert(lease).commit(&PostParams::default()).await
        }
        Entry::Occupied(mut o) => {
            if !may_acquire(o.get().spec.as_ref(), &cfg.identity, now) {
                return Ok(false);
            }
            let spec = o.get_mut().spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.holder_identity = Some(cfg.identity.clone());
            }
            spec.lease_duration_seconds = Some(ttl);
            spec.renew_time = Some(MicroTime(now));
            o.commit(&PostParams::default()).await
        }
    };
    match result {
        Ok(()) => Ok(true),
        // Someone else wrote first (409): not ours this round.
        Err(kube::api::entry::CommitError::Save(kube::Error::Api(e))) if e.code == 409 => Ok(false),
        Err(kube::api::entry::CommitError::Save(e)) => Err(e),
        Err(kube::api::entry::CommitError::Validate(e)) => Err(kube::Error::Service(Box::new(e))),
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) {
    loop {
        match try_acquire(api, cfg).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::info!(holder_wanted = %cfg.identity, "another replica leads; waiting")
            }
            Err(e) => tracing::warn!(error = %e, "lease acquire failed"),
        }
        tokio::time::sleep(cfg.renew_every).await;
    }
}

/// Renews forever; returns when leadership is lost (renewal impossible for a lease duration).
pub async fn keep(api: &Api<Lease>, cfg: &LeaseConfig) -> anyhow::Error {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew_every).await;
        match try_acquire(api, cfg).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => return anyhow::anyhow!("lease {} taken by another replica", cfg.name),
            Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
        }
        if last_ok.elapsed() > cfg.duration {
            return anyhow::anyhow!("could not renew lease {} for {:?}", cfg.name, cfg.duration);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("ts"))),
            ..LeaseSpec::default()
        }
    }

    use http::{Method, Request, Response};
    use kube::{Client, client::Body};
    use serde_json::{Value, json};

    fn lease(holder: &str, renewed: chrono::DateTime<chrono::Utc>) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "floodgate-operator", "namespace": "floodgate", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 0,
                        "renewTime": renewed.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}})
    }

    fn reply(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: &Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .expect("response"),
        );
    }

    /// Against a mocked API server: create when absent, back off from a live holder, take over
    /// an expired lease with a replace that bumps leaseTransitions.
    #[tokio::test]
    async fn acquires_by_create_or_replace_and_respects_a_live_holder() {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Lease> = Api::namespaced(Client::new(svc, "floodgate"), "floodgate");
        let cfg = LeaseConfig {
            namespace: "floodgate".into(),
            name: "floodgate-operator".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let path = "/apis/coordination.k8s.io/v1/namespaces/floodgate/leases";
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("get");
            assert_eq!(
                (req.method(), req.uri().path()),
                (&Method::GET, format!("{path}/floodgate-operator").as_str())
            );
            reply(
                send,
                404,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            );
            let (req, send) = handle.next_request().await.expect("create");
            assert_eq!((req.method(), req.uri().path()), (&Method::POST, path));
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.expect("body"))
                    .expect("json");
            assert_eq!(body["spec"]["holderIdentity"], "me");
            reply(send, 201, &body);

            let (_, send) = handle.next_request().await.expect("get");
            reply(send, 200, &lease("other", chrono::Utc::now()));

            let (_, send) = handle.next_request().await.expect("get");
            reply(
                send,
                200,
                &lease("other", chrono::Utc::now() - chrono::Duration::seconds(60)),
            );
            let (req, send) = handle.next_request().await.expect("replace");
            assert_eq!(
                (req.method(), req.uri().path()),
                (&Method::PUT, format!("{path}/floodgate-operator").as_str())
            );
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.expect("body"))
                    .expect("json");
            assert_eq!(body["spec"]["holderIdentity"], "me");
            assert_eq!(body["spec"]["leaseTransitions"], 1);
            assert_eq!(body["metadata"]["resourceVersion"], "7", "optimistic lock");
            reply(send, 200, &body);
            assert!(handle.next_request().await.is_none(), "no further calls");
        });
        assert!(try_acquire(&api, &cfg).await.expect("created"));
        assert!(!try_acquire(&api, &cfg).await.expect("held by other"));
        assert!(try_acquire(&api, &cfg).await.expect("taken over"));
        drop(api);
        server.await.expect("mock");
    }

    #[test]
    fn a_live_lease_of_someone_else_is_respected_an_expired_one_is_taken() {
        let now = Timestamp::from_second(1_000).expect("ts");
        assert!(may_acquire(None, "me", now));
        assert!(may_acquire(Some(&spec("me", 999)), "me", now));
        assert!(!may_acquire(Some(&spec("other", 990)), "me", now));
        assert!(may_acquire(Some(&spec("other", 980)), "me", now));
    }
}
