"""Monitoring objects: ServiceMonitor/PodMonitor ports, the PrometheusRule's alerts and their
runbooks, Grafana dashboards, and that every metric they query is one the app, the operator
or the load generator really exports."""

from __future__ import annotations

import json
import re

from conftest import CHART, NAMESPACE, REPO, find
from helpers import APP, OPERATOR, app_routes


EXPECTED_ALERTS = {
    "FloodgateCircuitBreakerOpen": "floodgate_circuit_state",
    "FloodgateStreamLag": "floodgate_stream_lag",
    "FloodgateQueueAdmissionStalled": "floodgate_queue_admitted_total",
    "FloodgateP95OverTarget": "floodgate_http_request_duration_seconds_bucket",
    "FloodgateOperatorFallbackActive": "floodgate_operator_fallback",
    "FloodgateOperatorReconcileErrors": "floodgate_operator_reconcile_failures_total",
    "FloodgateOperatorNoLeader": "floodgate_operator_leader",
    "FloodgateOperatorTargetContested": "floodgate_operator_conflict",
    "FloodgateRuntimeConfigStale": "floodgate_runtime_config_missing",
}


def test_prometheus_rule_alerts_and_runbooks(rendered):
    (rule,) = find(rendered["monitoring"], "PrometheusRule")
    alerts = {r["alert"]: r for g in rule.doc["spec"]["groups"] for r in g["rules"]}
    assert alerts.keys() == EXPECTED_ALERTS.keys()
    for name, metric in EXPECTED_ALERTS.items():
        assert metric in alerts[name]["expr"], name
        assert f'namespace="{NAMESPACE}"' in alerts[name]["expr"]
    stale = alerts["FloodgateRuntimeConfigStale"]["expr"]
    assert "floodgate_runtime_config_rejected_total" in stale and "floodgate_runtime_config_version" in stale
    assert "absent(floodgate_operator_leader" in alerts["FloodgateOperatorNoLeader"]["expr"]
    stalled = alerts["FloodgateQueueAdmissionStalled"]["expr"]
    assert "floodgate_queue_waiting" in stalled and "== 0" in stalled
    assert "0.25" in alerts["FloodgateP95OverTarget"]["expr"]
    # Every alert links to its section in docs/operations.md.
    ops = (REPO / "docs" / "operations.md").read_text()
    headings = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-")) for h in re.findall(r"^#+\s+(.*)$", ops, re.M)}
    for name, r in alerts.items():
        anchor = r["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in headings, f"{name}: docs/operations.md has no section #{anchor}"


def test_monitors_scrape_metrics_ports(rendered):
    manifests = rendered["monitoring"]
    sms = {m.name: m.doc for m in find(manifests, "ServiceMonitor")}
    assert sms.keys() == {APP, OPERATOR}
    assert sms[APP]["spec"]["endpoints"][0]["port"] == "http"
    assert sms[OPERATOR]["spec"]["endpoints"][0]["port"] == "metrics"
    assert all(e["path"] == "/metrics" for sm in sms.values() for e in sm["spec"]["endpoints"])
    assert sms[APP]["metadata"]["labels"]["release"] == "prom"
    (pm,) = find(manifests, "PodMonitor")
    assert pm.doc["spec"]["podMetricsEndpoints"][0]["port"] == "http"
    assert "/metrics" in app_routes()


def test_grafana_dashboards(rendered):
    cms = [m for m in find(rendered["monitoring"], "ConfigMap") if "-dashboard-" in m.name]
    assert {m.name.split("-dashboard-")[1] for m in cms} == {"app-overview", "waiting-room", "operator-decisions", "loadtest"}
    for m in cms:
        assert m.doc["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = m.doc["data"].items()
        board = json.loads(text)
        assert board["uid"] and board["title"].startswith("Floodgate")
        targets = [t for p in board["panels"] for t in p.get("targets", [])]
        assert targets, m
        kinds = {t["datasource"]["type"] for t in targets}
        assert kinds == ({"influxdb"} if key == "loadtest.json" else {"prometheus"}), (m, kinds)


def test_no_monitoring_objects_by_default(rendered):
    kinds = {m.kind for m in rendered["default"]}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert not [m for m in find(rendered["default"], "ConfigMap") if "-dashboard-" in m.name]


def exported_metrics() -> set[str]:
    """Metric families floodgate-app and floodgate-operator register with prometheus-client
    (full names: a file's `Registry::with_prefix("p")` is prepended; counters gain `_total`)."""
    names: set[str] = set()
    for crate in ("app", "operator"):
        for path in (REPO / crate / "src").rglob("*.rs"):
            src = path.read_text()
            prefix = re.search(r'with_prefix\(\s*"([a-z0-9_:]+)"', src)
            for name in re.findall(r'\.register(?:_with_unit)?\(\s*"([a-z0-9_:]+)"', src):
                names.add(f"{prefix.group(1)}_{name}" if prefix else name)
    return names


def referenced_metrics(manifests) -> set[str]:
    text = ""
    (rule,) = find(manifests, "PrometheusRule")
    text += "\n".join(r["expr"] for g in rule.doc["spec"]["groups"] for r in g["rules"])
    for m in find(manifests, "ConfigMap"):
        if "-dashboard-" in m.name:
            text += "\n".join(m.doc["data"].values())
    return set(re.findall(r"\b(floodgate_[a-z0-9_]+)\b", text))


def test_alerts_and_dashboards_use_exported_metrics(rendered):
    exported = exported_metrics()
    assert "floodgate_http_request_duration_seconds" in exported, sorted(exported)
    missing = []
    for name in sorted(referenced_metrics(rendered["monitoring"])):
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        if name not in exported and base not in exported:
            missing.append(name)
    assert not missing, f"referenced but exported by neither app nor operator: {missing}"


def test_loadtest_dashboard_reads_what_the_load_generator_writes():
    """Every InfluxDB measurement and tag the Load test dashboard queries is one
    floodgate-loadtest writes (loadtest/src/output/influx.rs)."""
    board = json.loads((CHART / "dashboards" / "loadtest.json").read_text())
    queries = [t["query"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["query"] for v in board["templating"]["list"] if isinstance(v.get("query"), str) and "FROM" in v["query"]]
    sink = (REPO / "loadtest" / "src" / "output" / "influx.rs").read_text()
    written = set(re.findall(r'point\(\s*"([a-z_]+)"', sink))
    tag_lists = re.findall(r"tags\s*=\s*\[(.*?)\];", sink, re.S)
    tags = {t for block in tag_lists for t in re.findall(r'\(\s*"([a-z_]+)"\s*,', block)}
    assert "scenario" in tags and "status" in tags, tags
    assert written, "found no measurement in the load generator's InfluxDB sink"
    for q in queries:
        for measurement in re.findall(r'FROM\s+"([a-z_]+)"', q):
            assert measurement in written, f"{measurement} is not written by floodgate-loadtest"
        for tag in re.findall(r'(?:AND|GROUP BY time\([^)]*\),|KEY =)\s*"([a-z_]+)"', q):
            assert tag in tags, f"tag {tag} is not written by floodgate-loadtest"
