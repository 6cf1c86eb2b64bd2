//! Samples recorded during a run: HdrHistograms in microseconds (3 significant figures)
//! per tag set, counters, checks and a per-second timeline. A `Metrics` value is one worker's
//! share; shares and shards merge exactly because histograms add bucket by bucket.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

mod codec;

pub use codec::hist_b64;
use codec::{check_list, req_list};

/// Tag set of one sample, as a sorted map so it can key other maps and print like k6.
pub type TagSet = BTreeMap<String, String>;

/// A fresh histogram: µs, 3 significant figures, sized for a minute and growing beyond.
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds: construction cannot fail.
    let mut h = Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| unreachable!("valid bounds"));
    h.auto(true);
    h
}

/// Records a value, growing the histogram if needed (saturating only past u64 buckets).
pub fn record(h: &mut Histogram<u64>, value: u64) {
    if h.record(value).is_err() {
        h.saturating_record(value);
    }
}

/// The tags of an HTTP request, held as shared strings so recording does not allocate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqKey {
    pub scenario: Arc<str>,
    pub group: Arc<str>,
    pub name: Arc<str>,
    pub method: &'static str,
    pub status: u16,
    pub expected: bool,
    pub extra: Option<Arc<TagSet>>,
}

impl ReqKey {
    pub fn tags(&self) -> TagSet {
        let mut t: TagSet = self.extra.as_deref().cloned().unwrap_or_default();
        t.insert("scenario".into(), self.scenario.to_string());
        t.insert("group".into(), self.group.to_string());
        t.insert("name".into(), self.name.to_string());
        t.insert("method".into(), self.method.into());
        t.insert("status".into(), self.status.to_string());
        t.insert("expected_response".into(), self.expected.to_string());
        t
    }
}

/// Latency from the intended start (`duration`) and from the actual send (`service`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReqStats {
    #[serde(with = "hist_b64")]
    pub duration: Histogram<u64>,
    #[serde(with = "hist_b64")]
    pub service: Histogram<u64>,
    pub reqs: u64,
    pub failed: u64,
}

impl Default for ReqStats {
    fn default() -> Self {
        ReqStats {
            duration: histogram(),
            service: histogram(),
            reqs: 0,
            failed: 0,
        }
    }
}

impl ReqStats {
    pub fn merge(&mut self, other: &ReqStats) {
        add(&mut self.duration, &other.duration);
        add(&mut self.service, &other.service);
        self.reqs += other.reqs;
        self.failed += other.failed;
    }
}

fn add(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Auto-resizing histograms of the same precision always add; a failure would be a bug.
    if let Err(e) = into.add(from) {
        unreachable!("histograms of equal precision add: {e}");
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PassFail {
    pub passes: u64,
    pub fails: u64,
}

/// One second of the run, for nGrinder-style TPS tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub reqs: u64,
    pub errors: u64,
    pub iterations: u64,
    pub duration_us_sum: u64,
}

/// A gauge sampled over the run (k6's `vus`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    pub value: u64,
    pub min: u64,
    pub max: u64,
    pub samples: u64,
}

impl Gauge {
    pub fn sample(&mut self, v: u64) {
        if self.samples == 0 {
            self.min = v;
        }
        self.value = v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.samples += 1;
    }

    /// Merging shards: VUs of concurrent shards add up.
    pub fn merge(&mut self, o: &Gauge) {
        if o.samples == 0 {
            return;
        }
        if self.samples == 0 {
            *self = *o;
            return;
        }
        self.value += o.value;
        self.min += o.min;
        self.max += o.max;
        self.samples = self.samples.max(o.samples);
    }
}

/// Everything one worker (or one shard, or a whole run) recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metrics {
    #[serde(with = "req_list")]
    pub requests: BTreeMap<TagSet, ReqStats>,
    #[serde(with = "check_list")]
    pub checks: BTreeMap<TagSet, PassFail>,
    pub iterations: u64,
    pub interrupted_iterations: u64,
    pub dropped_iterations: u64,
    #[serde(with = "hist_b64")]
    pub iteration_duration: Histogram<u64>,
    /// How late the open-model scheduler woke for each iteration (the generator's own lag).
    #[serde(with = "hist_b64")]
    pub scheduler_lag: Histogram<u64>,
    pub seconds: Vec<Second>,
    pub vus: Gauge,
    pub vus_max: Gauge,
    /// Wall time of the run in ms (the longest shard when merged).
    pub duration_ms: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: BTreeMap::new(),
            checks: BTreeMap::new(),
            iterations: 0,
            interrupted_iterations: 0,
            dropped_iterations: 0,
            iteration_duration: histogram(),
            scheduler_lag: histogram(),
            seconds: Vec::new(),
            vus: Gauge::default(),
            vus_max: Gauge::default(),
            duration_ms: 0,
        }
    }
}

impl Metrics {
    pub fn second(&mut self, index: usize) -> &mut Second {
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, Second::default());
        }
        &mut self.seconds[index]
    }

    pub fn merge(&mut self, o: &Metrics) {
        for (k, v) in &o.requests {
            self.requests.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.checks {
            let e = self.checks.entry(k.clone()).or_default();
            e.passes += v.passes;
            e.fails += v.fails;
        }
        self.iterations += o.iterations;
        self.interrupted_iterations += o.interrupted_iterations;
        self.dropped_iterations += o.dropped_iterations;
        add(&mut self.iteration_duration, &o.iteration_duration);
        add(&mut self.scheduler_lag, &o.scheduler_lag);
        for (i, s) in o.seconds.iter().enumerate() {
            let me = self.second(i);
            me.reqs += s.reqs;
            me.errors += s.errors;
            me.iterations += s.iterations;
            me.duration_us_sum += s.duration_us_sum;
        }
        self.vus.merge(&o.vus);
        self.vus_max.merge(&o.vus_max);
        self.duration_ms = self.duration_ms.max(o.duration_ms);
    }

    /// Request statistics of every tag set matching all `filter` pairs (k6 sub-metrics).
    pub fn requests_matching(&self, filter: &TagSet) -> ReqStats {
        let mut out = ReqStats::default();
        for (tags, stats) in &self.requests {
            if filter.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                out.merge(stats);
            }
        }
        out
    }

    pub fn checks_matching(&self, filter: &TagSet) -> PassFail {
        let mut out = PassFail::default();
        for (tags, pf) in &self.checks {
            if filter.iter().all(|(k, v)| tags.get(k) == Some(v)) {
                out.passes += pf.passes;
                out.fails += pf.fails;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn tags(name: &str) -> TagSet {
        TagSet::from([("name".to_string(), name.to_string())])
    }

    #[test]
    fn merged_shards_equal_a_single_run() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut single = Metrics::default();
        let mut shards = vec![Metrics::default(), Metrics::default(), Metrics::default()];
        for i in 0..30_000u64 {
            // Log-uniform latencies from 100 µs to ~10 s exercise many buckets.
            let v = (100.0 * 10f64.powf(rng.random_range(0.0..5.0))) as u64;
            let name = if i % 3 == 0 { "order" } else { "list" };
            for m in [&mut single, &mut shards[(i % 3) as usize]] {
                let r = m.requests.entry(tags(name)).or_default();
                record(&mut r.duration, v);
                record(&mut r.service, v / 2);
                r.reqs += 1;
                m.second((i / 1000) as usize).reqs += 1;
            }
        }
        // Shards cross a serialization round trip, as they do between machines.
        let mut merged = Metrics::default();
        for s in &shards {
            let json = serde_json::to_string(s).expect("serialize");
            let back: Metrics = serde_json::from_str(&json).expect("deserialize");
            merged.merge(&back);
        }
        let all = TagSet::new();
        let (a, b) = (
            single.requests_matching(&all),
            merged.requests_matching(&all),
        );
        for q in [0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
            assert_eq!(
                a.duration.value_at_quantile(q),
                b.duration.value_at_quantile(q),
                "q={q}"
            );
            assert_eq!(
                a.service.value_at_quantile(q),
                b.service.value_at_quantile(q),
                "q={q}"
            );
        }
        assert_eq!(a.duration.len(), 30_000);
        assert_eq!(b.duration.len(), 30_000);
        assert_eq!(single.seconds, merged.seconds);
        let order = merged.requests_matching(&tags("order"));
        assert_eq!(order.reqs, 10_000);
        assert_eq!(
            order.duration.value_at_quantile(0.95),
            single
                .requests_matching(&tags("order"))
                .duration
                .value_at_quantile(0.95)
        );
    }

    #[test]
    fn gauges_of_concurrent_shards_add() {
        let mut a = Gauge::default();
        a.sample(5);
        a.sample(10);
        let mut b = Gauge::default();
        b.sample(7);
        a.merge(&b);
        assert_eq!((a.value, a.min, a.max), (17, 12, 17));
    }
}
