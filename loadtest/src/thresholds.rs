//! k6 thresholds: `metric{tag:value}` keys with expressions like `p(95)<2000`, `rate<0.01`,
//! `count>=100`, plus `abortOnFail` and `delayAbortEval`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::ThresholdSpec;
use crate::metrics::{Metrics, TagSet};
use crate::values::{kind_of, value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// The key as written (`http_req_duration{name:order}`); summaries group by it.
    pub key: String,
    pub metric: String,
    pub filter: TagSet,
    /// The expression as written (`p(95)<2000`).
    pub source: String,
    pub agg: String,
    pub op: Op,
    pub limit: f64,
    pub abort_on_fail: bool,
    pub delay_abort_eval: Duration,
}

/// Splits `metric{k:v,k2:v2}` into the metric name and its tag filter.
pub fn parse_key(key: &str) -> Result<(String, TagSet), String> {
    let key = key.trim();
    let Some(open) = key.find('{') else {
        return Ok((key.to_string(), TagSet::new()));
    };
    let inner = key[open + 1..]
        .strip_suffix('}')
        .ok_or_else(|| format!("unclosed tag filter in {key:?}"))?;
    let mut filter = TagSet::new();
    for pair in inner.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair
            .split_once(':')
            .ok_or_else(|| format!("tag filter {pair:?} is not key:value"))?;
        let unquote = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        filter.insert(unquote(k), unquote(v));
    }
    Ok((key[..open].trim().to_string(), filter))
}

/// Parses `p(95)<2000` into aggregate, operator and limit.
pub fn parse_expr(expr: &str) -> Result<(String, Op, f64), String> {
    let e: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let ops = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("=", Op::Eq),
    ];
    let (pos, tok, op) = ops
        .iter()
        .filter_map(|(t, o)| e.find(t).map(|p| (p, *t, *o)))
        .min_by_key(|(p, t, _)| (*p, std::cmp::Reverse(t.len())))
        .ok_or_else(|| format!("threshold {expr:?} has no comparison"))?;
    let agg = e[..pos].to_string();
    let limit: f64 = e[pos + tok.len()..]
        .parse()
        .map_err(|_| format!("threshold {expr:?} needs a numeric limit"))?;
    let known = matches!(
        agg.as_str(),
        "avg" | "min" | "max" | "med" | "count" | "rate" | "value" | "passes" | "fails"
    ) || agg
        .strip_prefix("p(")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|p| p.parse::<f64>().ok())
        .is_some_and(|p| (0.0..=100.0).contains(&p));
    if !known {
        return Err(format!("unknown aggregate {agg:?} in threshold {expr:?}"));
    }
    Ok((agg, op, limit))
}

/// Parses the `thresholds` block of the options.
pub fn parse_all(map: &BTreeMap<String, Vec<ThresholdSpec>>) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for (key, specs) in map {
        let (metric, filter) = parse_key(key)?;
        if kind_of(&metric).is_none() {
            return Err(format!("threshold on unknown metric {metric:?}"));
        }
        for spec in specs {
            let (source, abort_on_fail, delay) = match spec {
                ThresholdSpec::Expr(e) => (e.clone(), false, Duration::ZERO),
                ThresholdSpec::Full {
                    threshold,
                    abort_on_fail,
                    delay_abort_eval,
                } => (
                    threshold.clone(),
                    *abort_on_fail,
                    delay_abort_eval.map_or(Duration::ZERO, |d| d.0),
                ),
            };
            let (agg, op, limit) = parse_expr(&source)?;
            out.push(Threshold {
                key: key.trim().to_string(),
                metric: metric.clone(),
                filter: filter.clone(),
                source,
                agg,
                op,
                limit,
                abort_on_fail,
                delay_abort_eval: delay,
            });
        }
    }
    Ok(out)
}

/// Parses the command-line form `metric: expr` (the metric key may itself hold `name:x`).
pub fn parse_cli(text: &str) -> Result<(String, String), String> {
    let split_at = match text.find('}') {
        Some(close) => text[close..].find(':').map(|p| p + close),
        None => text.find(':'),
    };
    let at = split_at.ok_or_else(|| format!("threshold {text:?} is not 'metric: expression'"))?;
    Ok((
        text[..at].trim().to_string(),
        text[at + 1..].trim().to_string(),
    ))
}

impl Threshold {
    /// Whether the threshold holds. A metric without samples passes, as in k6.
    pub fn evaluate(&self, m: &Metrics) -> bool {
        match value(m, &self.metric, &self.filter, &self.agg) {
            Some(v) => self.op.holds(v, self.limit),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ReqStats, record};

    fn metrics() -> Metrics {
        let mut m = Metrics {
            duration_ms: 10_000,
            ..Metrics::default()
        };
        for (name, base, failed) in [("order", 3_000_000u64, 5u64), ("list", 10_000, 0)] {
            let mut s = ReqStats::default();
            for i in 0..100 {
                record(&mut s.duration, base + i * 1000);
            }
            s.reqs = 100;
            s.failed = failed;
            m.requests
                .insert(TagSet::from([("name".to_string(), name.to_string())]), s);
        }
        m
    }

    fn thresholds(yaml: &str) -> Vec<Threshold> {
        let map: BTreeMap<String, Vec<ThresholdSpec>> = serde_yaml::from_str(yaml).expect("yaml");
        parse_all(&map).expect("parse")
    }

    #[test]
    fn parses_k6_syntax() {
        assert_eq!(
            parse_expr("p(95) < 2000"),
            Ok(("p(95)".into(), Op::Lt, 2000.0))
        );
        assert_eq!(parse_expr("rate<=0.01"), Ok(("rate".into(), Op::Le, 0.01)));
        assert_eq!(parse_expr("count>=10"), Ok(("count".into(), Op::Ge, 10.0)));
        assert_eq!(parse_expr("p(99.9)<5"), Ok(("p(99.9)".into(), Op::Lt, 5.0)));
        assert!(parse_expr("p95<5").is_err());
        assert!(parse_expr("avg").is_err());
        assert!(parse_expr("avg<x").is_err());
        let (metric, filter) =
            parse_key("http_req_duration{name:order, status:'201'}").expect("key");
        assert_eq!(metric, "http_req_duration");
        assert_eq!(filter.get("status").map(String::as_str), Some("201"));
        assert_eq!(
            parse_cli("http_req_duration{name:order}: p(95)<2000"),
            Ok(("http_req_duration{name:order}".into(), "p(95)<2000".into()))
        );
        assert_eq!(
            parse_cli("http_req_failed: rate<0.01"),
            Ok(("http_req_failed".into(), "rate<0.01".into()))
        );
    }

    #[test]
    fn evaluates_with_tag_filters() {
        let t = thresholds(
            r#"
http_req_duration: ['p(95)<2000']
"http_req_duration{name:list}": ['p(95)<2000', 'max<200']
http_req_failed: [{threshold: 'rate<0.01', abortOnFail: true, delayAbortEval: 10s}]
"http_req_failed{name:list}": ['rate==0']
http_reqs: ['count==200', 'rate>19']
"#,
        );
        let m = metrics();
        let verdict: Vec<(String, bool)> = t
            .iter()
            .map(|t| (format!("{} {}", t.key, t.source), t.evaluate(&m)))
            .collect();
        let expect = [
            ("http_req_duration p(95)<2000", false),
            ("http_req_duration{name:list} p(95)<2000", true),
            ("http_req_duration{name:list} max<200", true),
            ("http_req_failed rate<0.01", false),
            ("http_req_failed{name:list} rate==0", true),
            ("http_reqs count==200", true),
            ("http_reqs rate>19", true),
        ];
        for (name, ok) in expect {
            let found = verdict
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("missing {name}"));
            assert_eq!(found.1, ok, "{name}");
        }
        let abort = t.iter().find(|t| t.abort_on_fail).expect("abort threshold");
        assert_eq!(abort.delay_abort_eval, Duration::from_secs(10));
    }

    #[test]
    fn rejects_unknown_metrics() {
        let map = BTreeMap::from([(
            "no_such_metric".to_string(),
            vec![ThresholdSpec::Expr("avg<1".into())],
        )]);
        assert!(parse_all(&map).is_err());
    }
}
