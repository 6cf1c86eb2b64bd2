//! What a run (or one shard of a distributed run) produces, and how shards combine: the
//! exact metrics, the generator's health, invariant results and threshold verdicts.

use serde::{Deserialize, Serialize};

use crate::config::Options;
use crate::metrics::Metrics;
use crate::scenarios::Invariant;
use crate::segment::Segment;
use crate::thresholds::{self, Threshold};

/// Whether the generator itself kept up: if it did not, latency figures are suspect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorHealth {
    pub segment: Segment,
    /// CPU seconds the generator used per wall second (1.0 = one full core).
    pub cpu_cores_used: f64,
    pub cores_available: usize,
    pub scheduler_lag_p99_ms: f64,
    pub scheduler_lag_max_ms: f64,
    pub behind: bool,
    pub reasons: Vec<String>,
}

impl GeneratorHealth {
    /// Judges a run: p99 scheduler lag over 10 ms, or its CPU nearly saturated, means the
    /// generator (not the target) may have shaped the numbers.
    pub fn judge(
        segment: Segment,
        metrics: &Metrics,
        cpu_cores_used: f64,
        cores_available: usize,
    ) -> Self {
        let lag = &metrics.scheduler_lag;
        let ms = |us: u64| us as f64 / 1000.0;
        let (p99, max) = if lag.is_empty() {
            (0.0, 0.0)
        } else {
            (ms(lag.value_at_quantile(0.99)), ms(lag.max()))
        };
        let mut reasons = Vec::new();
        if p99 > 10.0 {
            reasons.push(format!("scheduler lag p99 {p99:.1} ms > 10 ms"));
        }
        if cpu_cores_used > 0.9 * cores_available as f64 {
            reasons.push(format!(
                "generator CPU {:.0}% of {cores_available} core(s)",
                cpu_cores_used * 100.0
            ));
        }
        GeneratorHealth {
            segment,
            cpu_cores_used,
            cores_available,
            scheduler_lag_p99_ms: p99,
            scheduler_lag_max_ms: max,
            behind: !reasons.is_empty(),
            reasons,
        }
    }
}

/// The mergeable record of a run, stored under `floodgate` in the summary JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunData {
    pub scenario: String,
    pub target: String,
    pub segment: Segment,
    pub options: Options,
    pub metrics: Metrics,
    pub generator: Vec<GeneratorHealth>,
    pub invariants: Vec<Invariant>,
    pub aborted: bool,
    pub started_at: String,
}

impl RunData {
    /// Combines the shards of one distributed run into exact global figures.
    pub fn merge(shards: Vec<RunData>) -> anyhow::Result<RunData> {
        let mut iter = shards.into_iter();
        let mut out = iter
            .next()
            .ok_or_else(|| anyhow::anyhow!("nothing to merge"))?;
        let count = out.segment.count;
        let mut seen = vec![false; count as usize];
        seen[out.segment.index as usize] = true;
        for s in iter {
            anyhow::ensure!(
                s.scenario == out.scenario,
                "shards ran different scenarios ({} vs {})",
                s.scenario,
                out.scenario
            );
            anyhow::ensure!(
                s.segment.count == count,
                "shards disagree on the segment count"
            );
            anyhow::ensure!(
                !seen[s.segment.index as usize],
                "segment {} given twice",
                s.segment
            );
            seen[s.segment.index as usize] = true;
            out.metrics.merge(&s.metrics);
            out.generator.extend(s.generator);
            out.invariants.extend(s.invariants);
            out.aborted |= s.aborted;
            out.started_at = out.started_at.min(s.started_at);
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            tracing::warn!("segment {missing}/{count} is missing: figures cover part of the load");
        }
        out.segment = Segment::WHOLE;
        Ok(out)
    }

    pub fn thresholds(&self) -> anyhow::Result<Vec<Threshold>> {
        thresholds::parse_all(&self.options.thresholds).map_err(anyhow::Error::msg)
    }

    /// Every threshold with its verdict.
    pub fn verdicts(&self) -> anyhow::Result<Vec<(Threshold, bool)>> {
        Ok(self
            .thresholds()?
            .into_iter()
            .map(|t| {
                let ok = t.evaluate(&self.metrics);
                (t, ok)
            })
            .collect())
    }

    /// The exit verdict: thresholds held, invariants held, run not aborted.
    pub fn passed(&self) -> anyhow::Result<bool> {
        Ok(self.verdicts()?.iter().all(|(_, ok)| *ok)
            && self.invariants.iter().all(|i| i.ok)
            && !self.aborted)
    }
}
