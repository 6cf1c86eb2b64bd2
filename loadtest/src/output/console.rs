//! The end-of-test console summary in k6's layout, followed by an nGrinder-style TPS table,
//! the generator's health and the invariant results.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::config::Executor;
use crate::duration::format_duration;
use crate::metrics::{Metrics, TagSet};
use crate::report::RunData;
use crate::thresholds::Threshold;
use crate::values::{Kind, METRICS, kind_of, summary_values};

/// k6's way of printing a time in ms: `850µs`, `35.36ms`, `1.57s`.
pub fn fmt_ms(ms: f64) -> String {
    let trim = |v: f64| {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if ms < 1.0 {
        format!("{}µs", trim(ms * 1000.0))
    } else if ms < 1000.0 {
        format!("{}ms", trim(ms))
    } else {
        format!("{}s", trim(ms / 1000.0))
    }
}

fn describe(e: &Executor) -> String {
    match e {
        Executor::ConstantVus { vus, duration } => {
            format!("{vus} looping VUs for {}", format_duration(duration.0))
        }
        Executor::RampingVus {
            stages,
            graceful_ramp_down,
            ..
        } => format!(
            "Up to {} looping VUs for {} over {} stages (gracefulRampDown: {})",
            e.max_vus(),
            format_duration(e.duration()),
            stages.len(),
            format_duration(graceful_ramp_down.0)
        ),
        Executor::ConstantArrivalRate {
            rate,
            time_unit,
            pre_allocated_vus,
            max_vus,
            ..
        } => format!(
            "{rate} iterations/{} for {} (maxVUs: {pre_allocated_vus}-{max_vus})",
            format_duration(time_unit.0),
            format_duration(e.duration())
        ),
        Executor::RampingArrivalRate {
            start_rate,
            stages,
            pre_allocated_vus,
            max_vus,
            ..
        } => format!(
            "Up to {:.2} iterations/s for {} over {} stages (startRate: {start_rate}, maxVUs: {pre_allocated_vus}-{max_vus})",
            stages.iter().map(|s| s.target).fold(*start_rate, f64::max),
            format_duration(e.duration()),
            stages.len()
        ),
    }
}

/// ✓/✗ when thresholds exist on exactly this metric and filter, blank otherwise.
fn mark(verdicts: &[(Threshold, bool)], metric: &str, filter: &TagSet) -> &'static str {
    let own: Vec<bool> = verdicts
        .iter()
        .filter(|(t, _)| t.metric == metric && &t.filter == filter)
        .map(|(_, ok)| *ok)
        .collect();
    match (own.is_empty(), own.iter().all(|ok| *ok)) {
        (true, _) => " ",
        (false, true) => "✓",
        (false, false) => "✗",
    }
}

fn line(out: &mut String, mark: &str, label: &str, value: &str) {
    let dots = 32usize.saturating_sub(label.chars().count());
    let _ = writeln!(out, "   {mark} {label}{}: {value}", ".".repeat(dots));
}

fn metric_text(m: &Metrics, metric: &str, filter: &TagSet) -> Option<String> {
    let v = summary_values(m, metric, filter);
    let get = |k: &str| v.get(k).copied();
    Some(match kind_of(metric)? {
        Kind::Trend => ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"]
            .iter()
            .filter_map(|a| get(a).map(|x| format!("{a}={}", fmt_ms(x))))
            .collect::<Vec<_>>()
            .join(" "),
        Kind::Rate => {
            let (p, f) = (get("passes").unwrap_or(0.0), get("fails").unwrap_or(0.0));
            format!("{:.2}% ✓ {p} ✗ {f}", get("rate").unwrap_or(0.0) * 100.0)
        }
        Kind::Counter => format!(
            "{} {:.2}/s",
            get("count").unwrap_or(0.0),
            get("rate").unwrap_or(0.0)
        ),
        Kind::Gauge => format!(
            "{} min={} max={}",
            get("value").unwrap_or(0.0),
            get("min").unwrap_or(0.0),
            get("max").unwrap_or(0.0)
        ),
    })
}

/// Renders the whole end-of-test summary.
pub fn render(data: &RunData, verdicts: &[(Threshold, bool)]) -> String {
    let m = &data.metrics;
    let mut out = String::new();
    let o = &data.options;
    let max_vus: u64 = o.scenarios.values().map(|s| s.executor.max_vus()).sum();
    let _ = writeln!(
        out,
        "\n     scenario: {}  target: {}  segment: {}",
        data.scenario, data.target, data.segment
    );
    let _ = writeln!(
        out,
        "    scenarios: (100.00%) {} scenario(s), {max_vus} max VUs, {} max duration (incl. graceful stop):",
        o.scenarios.len(),
        format_duration(o.total_duration())
    );
    for (name, s) in &o.scenarios {
        let _ = writeln!(
            out,
            "             * {name}: {} (startTime: {}, gracefulStop: {})",
            describe(&s.executor),
            format_duration(s.start_time.0),
            format_duration(s.graceful_stop.0)
        );
    }
    out.push('\n');
    // Checks by group (k6 prints `█ group` headers), the same check of several scenarios
    // added up.
    let mut groups: BTreeMap<&str, BTreeMap<&str, (u64, u64)>> = BTreeMap::new();
    for (tags, pf) in &m.checks {
        let group = tags.get("group").map_or("", String::as_str);
        let name = tags.get("check").map_or("", String::as_str);
        let e = groups.entry(group).or_default().entry(name).or_default();
        e.0 += pf.passes;
        e.1 += pf.fails;
    }
    for (group, checks) in &groups {
        let indent = if group.is_empty() { "" } else { "  " };
        if !group.is_empty() {
            let _ = writeln!(
                out,
                "     █ {}
",
                group.trim_start_matches("::")
            );
        }
        for (name, (passes, fails)) in checks {
            if *fails == 0 {
                let _ = writeln!(out, "     {indent}✓ {name}");
            } else {
                let pct = passes * 100 / (passes + fails).max(1);
                let _ = writeln!(
                    out,
                    "     {indent}✗ {name}\n      {indent}↳  {pct}% — ✓ {passes} / ✗ {fails}"
                );
            }
        }
        out.push('\n');
    }
    out.push('\n');
    let names = crate::output::summary::request_names(m);
    for (metric, _) in METRICS {
        let Some(text) = metric_text(m, metric, &TagSet::new()).filter(|t| !t.is_empty()) else {
            continue;
        };
        line(
            &mut out,
            mark(verdicts, metric, &TagSet::new()),
            metric,
            &text,
        );
        // Sub-metrics: every request name for durations, plus every threshold's tag filter.
        let mut filters: Vec<TagSet> = Vec::new();
        if *metric == "http_req_duration" {
            filters.extend(
                names
                    .iter()
                    .map(|n| TagSet::from([("name".to_string(), n.clone())])),
            );
        }
        for (t, _) in verdicts
            .iter()
            .filter(|(t, _)| t.metric == *metric && !t.filter.is_empty())
        {
            if !filters.contains(&t.filter) {
                filters.push(t.filter.clone());
            }
        }
        for filter in &filters {
            if let Some(text) = metric_text(m, metric, filter) {
                let label: Vec<String> = filter.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                line(
                    &mut out,
                    mark(verdicts, metric, filter),
                    &format!("  {{ {} }}", label.join(", ")),
                    &text,
                );
            }
        }
    }
    out.push_str(&tps_table(m));
    for g in &data.generator {
        let _ = writeln!(
            out,
            "     generator {}: CPU {:.0}% of {} core(s), scheduler lag p99 {:.2}ms max {:.2}ms — {}",
            g.segment,
            g.cpu_cores_used * 100.0,
            g.cores_available,
            g.scheduler_lag_p99_ms,
            g.scheduler_lag_max_ms,
            if g.behind {
                format!(
                    "FELL BEHIND ({}): latency figures are suspect",
                    g.reasons.join("; ")
                )
            } else {
                "kept up".into()
            }
        );
    }
    for i in &data.invariants {
        let _ = writeln!(
            out,
            "     invariant {} {}: {}",
            if i.ok { "✓" } else { "✗" },
            i.name,
            i.detail
        );
    }
    for (t, _) in verdicts.iter().filter(|(_, ok)| !ok) {
        let _ = writeln!(out, "     threshold ✗ {}: {} crossed", t.key, t.source);
    }
    if data.aborted {
        out.push_str("     run ABORTED by a threshold with abortOnFail\n");
    }
    out
}

/// nGrinder's result table: mean TPS, peak TPS, mean test time, executed tests, errors.
pub fn tps_table(m: &Metrics) -> String {
    let reqs: u64 = m.seconds.iter().map(|s| s.reqs).sum();
    let errors: u64 = m.seconds.iter().map(|s| s.errors).sum();
    let active: Vec<_> = m.seconds.iter().filter(|s| s.reqs > 0).collect();
    let peak = active.iter().map(|s| s.reqs).max().unwrap_or(0);
    let mean_tps = if active.is_empty() {
        0.0
    } else {
        reqs as f64 / active.len() as f64
    };
    let sum_us: u64 = m.seconds.iter().map(|s| s.duration_us_sum).sum();
    let mean_ms = if reqs == 0 {
        0.0
    } else {
        sum_us as f64 / reqs as f64 / 1000.0
    };
    let mut out = String::from(
        "\n     |TPS|peak TPS|mean test time|executed tests|errors|\n     |---|---|---|---|---|\n",
    );
    let _ = writeln!(
        out,
        "     |{mean_tps:.1}|{peak}|{mean_ms:.2}ms|{reqs}|{errors}|\n"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Second;

    #[test]
    fn formats_times_like_k6() {
        assert_eq!(fmt_ms(0.85), "850µs");
        assert_eq!(fmt_ms(35.361), "35.36ms");
        assert_eq!(fmt_ms(1570.0), "1.57s");
    }

    #[test]
    fn tps_table_uses_seconds_with_traffic() {
        let m = Metrics {
            seconds: vec![
                Second {
                    reqs: 100,
                    errors: 1,
                    iterations: 100,
                    duration_us_sum: 100_000,
                },
                Second {
                    reqs: 300,
                    errors: 0,
                    iterations: 300,
                    duration_us_sum: 900_000,
                },
                Second::default(),
            ],
            ..Metrics::default()
        };
        let t = tps_table(&m);
        assert!(t.contains("|200.0|300|2.50ms|400|1|"), "{t}");
    }
}
