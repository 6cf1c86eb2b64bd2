//! Leader election on a `coordination.k8s.io/v1` Lease, so only one operator replica scales
//! Deployments and writes the runtime document. The rules (when to take, when to step down,
//! what a release writes) are pure, in [`rules`]; this is the shell that reads and writes the
//! Lease with kube's Entry API: get, then create or replace with the Lease's resourceVersion
//! (the API server's optimistic lock), so two replicas racing for it cannot both win.

pub mod rules;
#[cfg(test)]
mod tests;

use std::time::Duration;

use k8s_openapi::{api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api,
    api::{PostParams, entry::CommitError, entry::Entry},
};
use tokio::time::Instant;

pub use rules::Timings;
use rules::{Observer, Verdict};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timings: Timings,
}

/// The outcome of one read-and-maybe-write of the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it now (created, renewed or taken over).
    Held,
    /// Someone else holds it.
    Wait { holder: String, retry_in: Duration },
    /// Another replica wrote between our read and our write (409): read again.
    Conflict,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    observer: Observer,
    origin: Instant,
    /// Start of the last successful create/renew/takeover.
    renewed: Option<Instant>,
}

impl Elector {
    pub fn new(api: Api<Lease>, cfg: LeaseConfig) -> Self {
        Self {
            api,
            cfg,
            observer: Observer::default(),
            origin: Instant::now(),
            renewed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    fn millis(&self, at: Instant) -> rules::Millis {
        u64::try_from(at.duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Reads the Lease and writes ourselves in when the rules say so.
    pub async fn try_acquire(&mut self) -> Result<Attempt, kube::Error> {
        let started = Instant::now();
        let (me, t) = (self.cfg.identity.clone(), self.cfg.timings);
        let wall = k8s_openapi::jiff::Timestamp::now();
        let result = match self.api.entry(&self.cfg.name).await? {
            Entry::Vacant(v) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(rules::claim(None, &me, &t, wall)),
                };
                v.insert(lease).commit(&PostParams::default()).await
            }
            Entry::Occupied(mut o) => {
                let version = o
                    .get()
                    .metadata
                    .resource_version
                    .clone()
                    .unwrap_or_default();
                let read = Some((version.as_str(), o.get().spec.as_ref()));
                let now = self.millis(Instant::now());
                if let Verdict::Wait { holder, retry_in } = self.observer.judge(read, &me, now, &t)
                {
                    return Ok(Attempt::Wait { holder, retry_in });
                }
                let spec = rules::claim(o.get().spec.as_ref(), &me, &t, wall);
                o.get_mut().spec = Some(spec);
                o.commit(&PostParams::default()).await
            }
        };
        match result {
            Ok(()) => {
                self.renewed = Some(started);
                Ok(Attempt::Held)
            }
            Err(CommitError::Save(kube::Error::Api(e))) if e.code == 409 => Ok(Attempt::Conflict),
            Err(CommitError::Save(e)) => Err(e),
            Err(CommitError::Validate(e)) => Err(kube::Error::Service(Box::new(e))),
        }
    }

    /// Waits until this replica holds the lease, reading it every `retry` (or sooner, when
    /// the holder's lease expires sooner). Race it against shutdown: a follower has nothing
    /// to release.
    pub async fn acquire(&mut self) {
        let mut last_holder = String::new();
        loop {
            let retry_in = match self.try_acquire().await {
                Ok(Attempt::Held) => return,
                Ok(Attempt::Wait { holder, retry_in }) => {
                    if holder != last_holder {
                        tracing::info!(%holder, lease = %self.cfg.name, "another replica leads; following");
                        last_holder = holder;
                    }
                    retry_in
                }
                Ok(Attempt::Conflict) => self.cfg.timings.retry,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the lease failed");
                    self.cfg.timings.retry
                }
            };
            tokio::time::sleep(retry_in).await;
        }
    }

    /// Renews every `retry` while leading; returns why leadership ended: the lease was taken
    /// over, or no renewal succeeded within the renew deadline (then the caller must stop at
    /// once: followers may take the lease `lease - renew_deadline` later).
    pub async fn hold(&mut self) -> anyhow::Error {
        let t = self.cfg.timings;
        loop {
            let renewed = self.renewed.unwrap_or_else(Instant::now);
            let deadline = renewed + t.renew_deadline;
            tokio::time::sleep_until((Instant::now() + t.retry).min(deadline)).await;
            match tokio::time::timeout_at(deadline, self.try_acquire()).await {
                Ok(Ok(Attempt::Held | Attempt::Conflict)) | Err(_) => {}
                Ok(Ok(Attempt::Wait { holder, .. })) => {
                    return anyhow::anyhow!("lease {} taken over by {holder}", self.cfg.name);
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
            }
            let renewed = self.renewed.unwrap_or(renewed);
            let now = Instant::now();
            if rules::must_stop(self.millis(renewed), self.millis(now), &t) {
                return anyhow::anyhow!(
                    "could not renew lease {} within the renew deadline ({:?})",
                    self.cfg.name,
                    t.renew_deadline
                );
            }
        }
    }

    /// Gives the lease up (empty holder, 1 s duration) if we still hold it, so a follower
    /// takes it on its next read instead of waiting for it to expire. True when released.
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        let Entry::Occupied(mut o) = self.api.entry(&self.cfg.name).await? else {
            return Ok(false);
        };
        let mine = o
            .get()
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.cfg.identity.as_str());
        if !mine {
            return Ok(false);
        }
        let spec = o.get().spec.clone().unwrap_or_default();
        o.get_mut().spec = Some(rules::released(&spec, k8s_openapi::jiff::Timestamp::now()));
        match o.commit(&PostParams::default()).await {
            Ok(()) => {
                self.renewed = None;
                Ok(true)
            }
            Err(CommitError::Save(kube::Error::Api(e))) if e.code == 409 => Ok(false),
            Err(CommitError::Save(e)) => Err(e),
            Err(CommitError::Validate(e)) => Err(kube::Error::Service(Box::new(e))),
        }
    }
}

/// SIGTERM or SIGINT, as a future every part of the process can await (cloned).
pub type Shutdown = futures::future::Shared<futures::future::BoxFuture<'static, ()>>;

/// Installs the handlers now (a signal before the first poll is not lost) and resolves on
/// the first SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> std::io::Result<Shutdown> {
    use futures::FutureExt;
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
    .boxed()
    .shared())
}

/// What leading needs besides the Lease: the gauge and readiness it flips, and how long the
/// controllers get to finish their reconciles after a shutdown signal.
pub struct Leading<'a> {
    pub metrics: &'a crate::telemetry::Metrics,
    pub ready: &'a std::sync::atomic::AtomicBool,
    pub grace: Duration,
}

/// The process's life in cluster mode: follow until the Lease is ours (or shutdown), then run
/// the controllers while renewing. On shutdown the controllers stop first, then the Lease is
/// released; when leadership is lost the error is returned at once and the caller exits.
pub async fn lead<F>(
    elector: &mut Elector,
    controllers: impl FnOnce(Shutdown) -> F,
    shutdown: Shutdown,
    leading: Leading<'_>,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::select! {
        () = shutdown.clone() => return Ok(()),
        () = elector.acquire() => {}
    }
    leading.metrics.leader.set(1);
    tracing::info!(identity = %elector.cfg.identity, lease = %elector.cfg.name, "leading");
    let grace = async {
        shutdown.clone().await;
        tokio::time::sleep(leading.grace).await;
    };
    let stopped = tokio::select! {
        r = controllers(shutdown.clone()) => Ok(r),
        () = grace => Ok(Err(anyhow::anyhow!("controllers did not stop within {:?}", leading.grace))),
        lost = elector.hold() => Err(lost),
    };
    leading.metrics.leader.set(0);
    leading
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let result = stopped.inspect_err(|lost| tracing::error!(error = %lost, "stopped leading"))?;
    match elector.release().await {
        Ok(true) => tracing::info!(lease = %elector.cfg.name, "released the lease"),
        Ok(false) => tracing::warn!("the lease is no longer ours; nothing to release"),
        Err(e) => tracing::warn!(error = %e, "releasing the lease failed; it expires instead"),
    }
    result
}
