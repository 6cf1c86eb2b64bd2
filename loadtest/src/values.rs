//! The k6 metric catalogue over recorded `Metrics`: which metrics exist, their type, and
//! their summary values (`avg`, `p(95)`, `rate`, `count`, …) in k6's units (ms for time).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::metrics::{Metrics, TagSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Trend,
    Rate,
    Counter,
    Gauge,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Trend => "trend",
            Kind::Rate => "rate",
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Metrics reported, in k6's order. `http_req_duration` counts from the intended start
/// (coordinated-omission corrected); `http_req_service_time` from the actual send.
pub const METRICS: &[(&str, Kind)] = &[
    ("checks", Kind::Rate),
    ("dropped_iterations", Kind::Counter),
    ("http_req_duration", Kind::Trend),
    ("http_req_failed", Kind::Rate),
    ("http_req_service_time", Kind::Trend),
    ("http_reqs", Kind::Counter),
    ("iteration_duration", Kind::Trend),
    ("iterations", Kind::Counter),
    ("scheduler_lag", Kind::Trend),
    ("vus", Kind::Gauge),
    ("vus_max", Kind::Gauge),
];

pub fn kind_of(metric: &str) -> Option<Kind> {
    METRICS.iter().find(|(n, _)| *n == metric).map(|(_, k)| *k)
}

/// A trend aggregate such as `p(99.9)` or `med`, in ms.
pub fn trend_value(h: &Histogram<u64>, agg: &str) -> Option<f64> {
    if h.is_empty() {
        return None;
    }
    let ms = |us: f64| us / 1000.0;
    Some(match agg {
        "avg" => ms(h.mean()),
        "min" => ms(h.min() as f64),
        "max" => ms(h.max() as f64),
        "med" => ms(h.value_at_quantile(0.5) as f64),
        _ => {
            let p: f64 = agg
                .strip_prefix("p(")?
                .strip_suffix(')')?
                .trim()
                .parse()
                .ok()?;
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            ms(h.value_at_quantile(p / 100.0) as f64)
        }
    })
}

fn trend<'a>(
    m: &Metrics,
    metric: &str,
    filter: &TagSet,
    keep: &'a mut Option<Histogram<u64>>,
) -> Option<&'a Histogram<u64>> {
    let h = match metric {
        "http_req_duration" => m.requests_matching(filter).duration,
        "http_req_service_time" => m.requests_matching(filter).service,
        "iteration_duration" if filter.is_empty() => m.iteration_duration.clone(),
        "scheduler_lag" if filter.is_empty() => m.scheduler_lag.clone(),
        _ => return None,
    };
    *keep = Some(h);
    keep.as_ref()
}

/// One aggregate of a (possibly tag-filtered) metric; `None` if it has no samples or the
/// aggregate does not apply.
pub fn value(m: &Metrics, metric: &str, filter: &TagSet, agg: &str) -> Option<f64> {
    let secs = (m.duration_ms as f64 / 1000.0).max(1e-9);
    match kind_of(metric)? {
        Kind::Trend => {
            let mut keep = None;
            trend_value(trend(m, metric, filter, &mut keep)?, agg)
        }
        Kind::Rate => {
            let (passes, fails) = match metric {
                // For http_req_failed a "pass" is a failed request, as in k6.
                "http_req_failed" => {
                    let r = m.requests_matching(filter);
                    (r.failed, r.reqs - r.failed)
                }
                _ => {
                    let c = m.checks_matching(filter);
                    (c.passes, c.fails)
                }
            };
            match agg {
                "rate" if passes + fails > 0 => Some(passes as f64 / (passes + fails) as f64),
                "passes" => Some(passes as f64),
                "fails" => Some(fails as f64),
                _ => None,
            }
        }
        Kind::Counter => {
            let count = match metric {
                "http_reqs" => m.requests_matching(filter).reqs,
                "iterations" if filter.is_empty() => m.iterations,
                "dropped_iterations" if filter.is_empty() => m.dropped_iterations,
                _ => return None,
            } as f64;
            match agg {
                "count" => Some(count),
                "rate" => Some(count / secs),
                _ => None,
            }
        }
        Kind::Gauge => {
            if !filter.is_empty() {
                return None;
            }
            let g = if metric == "vus" { m.vus } else { m.vus_max };
            match agg {
                "value" => Some(g.value as f64),
                "min" => Some(g.min as f64),
                "max" => Some(g.max as f64),
                _ => None,
            }
        }
    }
}

/// The values k6 prints and puts in `handleSummary` data for one metric.
pub fn summary_values(m: &Metrics, metric: &str, filter: &TagSet) -> BTreeMap<String, f64> {
    let aggs: &[&str] = match kind_of(metric) {
        Some(Kind::Trend) => &["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"],
        Some(Kind::Rate) => &["rate", "passes", "fails"],
        Some(Kind::Counter) => &["count", "rate"],
        Some(Kind::Gauge) => &["value", "min", "max"],
        None => &[],
    };
    aggs.iter()
        .filter_map(|a| value(m, metric, filter, a).map(|v| (a.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ReqStats, record};

    #[test]
    fn http_req_failed_counts_failures_as_passes() {
        let mut m = Metrics {
            duration_ms: 2000,
            ..Metrics::default()
        };
        let mut s = ReqStats::default();
        for v in [1000, 1200, 1400, 1600] {
            record(&mut s.duration, v);
        }
        s.reqs = 4;
        s.failed = 1;
        m.requests.insert(TagSet::new(), s);
        let all = TagSet::new();
        assert_eq!(value(&m, "http_req_failed", &all, "rate"), Some(0.25));
        assert_eq!(value(&m, "http_reqs", &all, "rate"), Some(2.0));
        assert_eq!(value(&m, "http_req_duration", &all, "max"), Some(1.6));
        assert_eq!(value(&m, "http_req_duration", &all, "avg"), Some(1.3));
        assert_eq!(value(&m, "iteration_duration", &all, "avg"), None);
        assert_eq!(value(&m, "nope", &all, "avg"), None);
    }
}
