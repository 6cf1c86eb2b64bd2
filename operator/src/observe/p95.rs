//! p95 from the app's latency histogram without Prometheus: cumulative bucket counts are
//! scraped every resync, and the quantile is taken over the difference between now and the
//! snapshot one window ago — what `histogram_quantile(0.95, rate(...[window]))` computes.

use std::collections::{BTreeMap, VecDeque};

use super::exposition::Sample;
use crate::scaling::{Latency, Millis};

pub const LATENCY_HISTOGRAM: &str = "floodgate_http_request_duration_seconds";

/// Cumulative counts by upper bound (`le`), summed over every other label and every pod.
/// Bounds are kept as their f64 bits so the map orders them numerically (all are >= 0).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets(BTreeMap<u64, f64>);

impl Buckets {
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut b = Self::default();
        b.add_samples(samples);
        b
    }

    /// Adds one pod's scrape (pods are summed: every request was served by exactly one).
    pub fn add_samples(&mut self, samples: &[Sample]) {
        let bucket = format!("{LATENCY_HISTOGRAM}_bucket");
        for s in samples.iter().filter(|s| s.name == bucket) {
            let Some(le) = s.labels.get("le").and_then(|le| parse_le(le)) else {
                continue;
            };
            *self.0.entry(le.to_bits()).or_default() += s.value;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn total(&self) -> f64 {
        self.0.values().last().copied().unwrap_or(0.0)
    }

    /// Counts observed since `earlier`. A pod restart resets its counters; when any bucket
    /// went down the earlier snapshot is useless and the current counts are the best delta.
    pub fn since(&self, earlier: &Self) -> Self {
        let reset = self
            .0
            .iter()
            .any(|(le, v)| earlier.0.get(le).is_some_and(|e| e > v));
        if reset {
            return self.clone();
        }
        Self(
            self.0
                .iter()
                .map(|(le, v)| (*le, v - earlier.0.get(le).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// The q-quantile in seconds by linear interpolation inside the bucket (Prometheus'
    /// method); `None` when no request was counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (bits, count) in &self.0 {
            let upper = f64::from_bits(*bits);
            if *count >= rank {
                if upper.is_infinite() {
                    // The answer is above the largest finite bound: report that bound.
                    return Some(lower);
                }
                let in_bucket = count - below;
                let frac = if in_bucket > 0.0 {
                    (rank - below) / in_bucket
                } else {
                    1.0
                };
                return Some(lower + (upper - lower) * frac);
            }
            lower = upper;
            below = *count;
        }
        Some(lower)
    }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => s.parse().ok().filter(|v: &f64| *v >= 0.0),
    }
}

/// Snapshots of the last window, per campaign.
#[derive(Clone, Debug, Default)]
pub struct LatencyWindow {
    snapshots: VecDeque<(Millis, Buckets)>,
}

impl LatencyWindow {
    /// Records a scrape and returns p95 over `window_ms` (or over what history there is,
    /// when the operator has run for less than a window).
    pub fn observe(&mut self, now: Millis, buckets: Buckets, window_ms: u64) -> Latency {
        // Keep one snapshot at or beyond the window's start as the baseline.
        while self.snapshots.len() > 1
            && self
                .snapshots
                .get(1)
                .is_some_and(|(t, _)| now.saturating_sub(*t) >= window_ms)
        {
            self.snapshots.pop_front();
        }
        let baseline = self.snapshots.front().map(|(_, b)| b.clone());
        self.snapshots.push_back((now, buckets.clone()));
        let Some(baseline) = baseline else {
            return Latency::Idle;
        };
        match buckets.since(&baseline).quantile(0.95) {
            Some(seconds) => Latency::P95Ms(seconds * 1000.0),
            None => Latency::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::exposition::parse;

    fn buckets(counts: &[(&str, f64)]) -> Buckets {
        let text: String = counts
            .iter()
            .map(|(le, c)| format!("{LATENCY_HISTOGRAM}_bucket{{route=\"/x\",le=\"{le}\"}} {c}\n"))
            .collect();
        Buckets::from_samples(&parse(&text).expect("parses"))
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 100 requests: 50 under 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1].
        let b = buckets(&[("0.1", 50.0), ("0.5", 90.0), ("1", 100.0), ("+Inf", 100.0)]);
        let p95 = b.quantile(0.95).expect("some");
        assert!((p95 - 0.75).abs() < 1e-9, "{p95}");
        assert!((b.quantile(0.5).expect("some") - 0.1).abs() < 1e-9);
    }

    #[test]
    fn quantile_in_the_inf_bucket_is_the_largest_bound() {
        let b = buckets(&[("0.1", 1.0), ("1", 2.0), ("+Inf", 100.0)]);
        assert_eq!(b.quantile(0.95), Some(1.0));
    }

    #[test]
    fn window_uses_bucket_deltas_not_lifetime_counts() {
        let mut w = LatencyWindow::default();
        // A long fast history, then 100 slow requests within the window.
        let fast = buckets(&[("0.1", 10_000.0), ("1", 10_000.0), ("+Inf", 10_000.0)]);
        let slow = buckets(&[("0.1", 10_000.0), ("1", 10_100.0), ("+Inf", 10_100.0)]);
        assert_eq!(
            w.observe(0, fast.clone(), 30_000),
            Latency::Idle,
            "no delta yet"
        );
        let Latency::P95Ms(ms) = w.observe(5_000, slow.clone(), 30_000) else {
            panic!("p95")
        };
        assert!(
            ms > 900.0,
            "lifetime p95 would be 100ms, window p95 is {ms}"
        );
        // Still inside the window that saw them.
        assert_eq!(w.observe(20_000, slow.clone(), 30_000), Latency::P95Ms(ms));
        // Once they are older than the window and nothing new came: idle, not the old value.
        assert_eq!(w.observe(40_000, slow, 30_000), Latency::Idle);
    }

    #[test]
    fn a_counter_reset_uses_current_counts() {
        let before = buckets(&[("0.1", 500.0), ("+Inf", 500.0)]);
        let after = buckets(&[("0.1", 0.0), ("1", 10.0), ("+Inf", 10.0)]);
        assert_eq!(after.since(&before), after);
    }
}
