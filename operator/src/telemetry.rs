//! The operator's own metrics (`/metrics`): reconciles, failures, duration (timed by a Drop
//! guard, as in controller-rs, so early returns are measured too) and per-campaign decisions.

use std::{sync::atomic::AtomicU64, time::Instant};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::scaling::Latency;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CampaignLabels {
    pub campaign: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub desired_replicas: Family<CampaignLabels, Gauge>,
    pub panic: Family<CampaignLabels, Gauge>,
    pub fallback: Family<CampaignLabels, Gauge>,
    /// 1 while the campaign refuses to scale a target another controller also scales (its
    /// Conflict condition is True).
    pub conflict: Family<CampaignLabels, Gauge>,
    pub waiting: Family<CampaignLabels, Gauge>,
    pub p95_seconds: Family<CampaignLabels, Gauge<f64, AtomicU64>>,
    /// 1 while this process holds the leader-election Lease (cluster mode).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("floodgate_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        });
        let desired_replicas = Family::default();
        let panic = Family::default();
        let fallback = Family::default();
        let conflict = Family::default();
        let waiting = Family::default();
        let p95_seconds = Family::<CampaignLabels, Gauge<f64, AtomicU64>>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by step",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        registry.register(
            "desired_replicas",
            "Replicas the campaign wants",
            desired_replicas.clone(),
        );
        registry.register(
            "panic",
            "1 while the campaign is in panic mode",
            panic.clone(),
        );
        registry.register(
            "fallback",
            "1 while metrics are unavailable and fallback replicas apply",
            fallback.clone(),
        );
        registry.register(
            "conflict",
            "1 while the campaign's target is also scaled by another controller and it refuses to scale it",
            conflict.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader-election Lease and runs the controllers",
            leader.clone(),
        );
        registry.register(
            "observed_waiting",
            "Users waiting across the campaign's queues",
            waiting.clone(),
        );
        registry.register(
            "observed_p95_seconds",
            "p95 latency of the app as observed",
            p95_seconds.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            desired_replicas,
            panic,
            fallback,
            conflict,
            waiting,
            p95_seconds,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile(&self, kind: &str) -> ReconcileTimer<'_> {
        let labels = KindLabels {
            kind: kind.to_owned(),
        };
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, kind: &str, error: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.into(),
                error: error.into(),
            })
            .inc();
    }

    pub fn campaign(
        &self,
        campaign: &str,
        desired: u32,
        panic: bool,
        fallback: bool,
        waiting: Option<u64>,
        p95: Latency,
    ) {
        let l = CampaignLabels {
            campaign: campaign.to_owned(),
        };
        self.desired_replicas
            .get_or_create(&l)
            .set(i64::from(desired));
        self.panic.get_or_create(&l).set(i64::from(panic));
        self.fallback.get_or_create(&l).set(i64::from(fallback));
        if let Some(w) = waiting {
            self.waiting
                .get_or_create(&l)
                .set(i64::try_from(w).unwrap_or(i64::MAX));
        }
        if let Latency::P95Ms(ms) = p95 {
            self.p95_seconds.get_or_create(&l).set(ms / 1000.0);
        }
    }

    /// Whether the campaign's Conflict condition is True.
    pub fn conflict(&self, campaign: &str, contested: bool) {
        self.conflict
            .get_or_create(&CampaignLabels {
                campaign: campaign.to_owned(),
            })
            .set(i64::from(contested));
    }

    /// A deleted campaign stops being reported.
    pub fn forget(&self, campaign: &str) {
        let l = CampaignLabels {
            campaign: campaign.to_owned(),
        };
        self.desired_replicas.remove(&l);
        self.panic.remove(&l);
        self.fallback.remove(&l);
        self.conflict.remove(&l);
        self.waiting.remove(&l);
        self.p95_seconds.remove(&l);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: KindLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_timer_observes_on_drop_and_campaign_gauges_are_exported() {
        let m = Metrics::default();
        {
            let _t = m.reconcile("Campaign");
        }
        m.campaign(
            "default/xmas",
            12,
            true,
            false,
            Some(91_000),
            Latency::P95Ms(212.0),
        );
        let text = m.encode();
        assert!(text.contains("floodgate_operator_leader 0"), "{text}");
        assert!(
            text.contains("floodgate_operator_reconciles_total{kind=\"Campaign\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "floodgate_operator_reconcile_duration_seconds_count{kind=\"Campaign\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("floodgate_operator_desired_replicas{campaign=\"default/xmas\"} 12"),
            "{text}"
        );
        assert!(
            text.contains(
                "floodgate_operator_observed_p95_seconds{campaign=\"default/xmas\"} 0.212"
            ),
            "{text}"
        );
        m.forget("default/xmas");
        assert!(!m.encode().contains("default/xmas"));
    }
}
