//! The JSON summary, shaped like k6's `handleSummary` data (`metrics.<name>.type/contains/
//! values/thresholds`, `root_group` with checks, `state`), plus a `floodgate` section that
//! carries the serialized histograms a later `merge` needs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;

use serde_json::{Map, Value, json};

use crate::metrics::{Metrics, TagSet};
use crate::report::RunData;
use crate::thresholds::Threshold;
use crate::values::{Kind, METRICS, kind_of, summary_values};

/// A stable short id for groups and checks (k6 uses an md5 of the path; any stable hash
/// keeps the shape).
fn id(path: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Names of all `name` tags that occur, for per-request sub-metrics.
pub fn request_names(m: &Metrics) -> BTreeSet<String> {
    m.requests
        .keys()
        .filter_map(|t| t.get("name").cloned())
        .collect()
}

fn metric_entry(
    m: &Metrics,
    metric: &str,
    filter: &TagSet,
    verdicts: &[(Threshold, bool)],
    key: &str,
) -> Option<Value> {
    let kind = kind_of(metric)?;
    let values = summary_values(m, metric, filter);
    let mut entry = json!({
        "type": kind.as_str(),
        "contains": if kind == Kind::Trend { "time" } else { "default" },
        "values": values,
    });
    let th: Map<String, Value> = verdicts
        .iter()
        .filter(|(t, _)| t.key == key)
        .map(|(t, ok)| (t.source.clone(), json!({ "ok": ok })))
        .collect();
    if !th.is_empty() {
        entry["thresholds"] = Value::Object(th);
    }
    Some(entry)
}

/// Builds the summary document.
pub fn build(data: &RunData, verdicts: &[(Threshold, bool)]) -> anyhow::Result<Value> {
    let m = &data.metrics;
    let mut metrics = Map::new();
    for (name, _) in METRICS {
        if let Some(e) = metric_entry(m, name, &TagSet::new(), verdicts, name) {
            metrics.insert(name.to_string(), e);
        }
    }
    // Sub-metrics: one per threshold tag filter and one per request name.
    let mut subs: BTreeMap<String, (String, TagSet)> = BTreeMap::new();
    for (t, _) in verdicts.iter().filter(|(t, _)| !t.filter.is_empty()) {
        subs.insert(t.key.clone(), (t.metric.clone(), t.filter.clone()));
    }
    for name in request_names(m) {
        let filter = TagSet::from([("name".to_string(), name.clone())]);
        subs.insert(
            format!("http_req_duration{{name:{name}}}"),
            ("http_req_duration".into(), filter),
        );
    }
    for (key, (metric, filter)) in subs {
        if let Some(e) = metric_entry(m, &metric, &filter, verdicts, &key) {
            metrics.insert(key, e);
        }
    }
    Ok(json!({
        "root_group": root_group(m),
        "options": {
            "summaryTrendStats": ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"],
            "summaryTimeUnit": "",
            "noColor": false,
        },
        "state": {
            "isStdOutTTY": std::io::stdout().is_terminal(),
            "isStdErrTTY": std::io::stderr().is_terminal(),
            "testRunDurationMs": m.duration_ms as f64,
        },
        "metrics": metrics,
        "floodgate": serde_json::to_value(data)?,
    }))
}

/// `root_group` with nested groups (`::name`) and their checks, as k6 lays them out.
fn root_group(m: &Metrics) -> Value {
    let mut by_group: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (tags, pf) in &m.checks {
        let group = tags.get("group").cloned().unwrap_or_default();
        let name = tags.get("check").cloned().unwrap_or_default();
        let path = format!("{group}::{name}");
        let list = by_group.entry(group).or_default();
        // The same check in several scenarios is one check in k6's tree: add them up.
        if let Some(existing) = list.iter_mut().find(|c| c["name"] == name.as_str()) {
            existing["passes"] = json!(existing["passes"].as_u64().unwrap_or(0) + pf.passes);
            existing["fails"] = json!(existing["fails"].as_u64().unwrap_or(0) + pf.fails);
        } else {
            list.push(json!({ "name": name, "path": path, "id": id(&path), "passes": pf.passes, "fails": pf.fails }));
        }
    }
    let root_checks = by_group.remove("").unwrap_or_default();
    let groups: Vec<Value> = by_group
        .into_iter()
        .map(|(path, checks)| {
            let name = path.trim_start_matches("::").to_string();
            json!({ "name": name, "path": path, "id": id(&path), "groups": [], "checks": checks })
        })
        .collect();
    json!({ "name": "", "path": "", "id": id(""), "groups": groups, "checks": root_checks })
}
