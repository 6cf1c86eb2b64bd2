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

    #[test]
    fn a_live_lease_of_someone_else_is_respected_an_expired_one_is_taken() {
        let now = Timestamp::from_second(1_000).expect("ts");
        assert!(may_acquire(None, "me", now));
        assert!(may_acquire(Some(&spec("me", 999)), "me", now));
        assert!(!may_acquire(Some(&spec("other", 990)), "me", now));
        assert!(may_acquire(Some(&spec("other", 980)), "me", now));
    }
}
