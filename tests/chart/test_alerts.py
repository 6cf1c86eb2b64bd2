"""The PrometheusRule's alerts through Prometheus's own tooling: `promtool check rules` parses
every expression, and `promtool test rules` evaluates the operator and runtime-config alerts
on series shaped like what the operator and the app export (names checked against the code
in test_monitoring.py). promtool comes from Debian's `prometheus` package, which
scripts/chart-tests.sh installs when it is missing; without it these tests fail."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from conftest import NAMESPACE, find

NS = f'namespace="{NAMESPACE}"'


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install Debian's prometheus package (scripts/chart-tests.sh does)"
    return path


def rule_groups(rendered) -> list[dict]:
    (rule,) = find(rendered["monitoring"], "PrometheusRule")
    return rule.doc["spec"]["groups"]


def test_promtool_checks_the_rules(rendered, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(rendered)}))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 9 rules found" in proc.stdout, proc.stdout


def test_operator_off_drops_the_operator_alerts(chart):
    from conftest import render
    manifests = render(chart, {"operator": {"enabled": False}, "monitoring": {"prometheusRule": {"enabled": True}}})
    (rule,) = find(manifests, "PrometheusRule")
    assert [g["name"] for g in rule.doc["spec"]["groups"]] == ["floodgate.app"]


def alert(name: str, at: str, *labels: dict) -> dict:
    return {"eval_time": at, "alertname": name, "exp_alerts": [{"exp_labels": l} for l in labels]}


# (case, input series, expected alerts): each a separate promtool test group
CASES = [
    ("leader-held", [
        {"series": f'floodgate_operator_leader{{{NS},pod="op-a"}}', "values": "1x20"},
        {"series": f'floodgate_operator_leader{{{NS},pod="op-b"}}', "values": "0x20"},
    ], [alert("FloodgateOperatorNoLeader", "15m")]),
    ("leader-lost", [
        {"series": f'floodgate_operator_leader{{{NS},pod="op-a"}}', "values": "1x2 0x20"},
    ], [alert("FloodgateOperatorNoLeader", "4m"),
        alert("FloodgateOperatorNoLeader", "15m", {"namespace": NAMESPACE, "severity": "critical"})]),
    ("operator-not-scraped", [
        {"series": f'floodgate_runtime_config_version{{{NS},pod="app-a"}}', "values": "3x20"},
    ], [alert("FloodgateOperatorNoLeader", "15m", {"namespace": NAMESPACE, "severity": "critical"})]),
    ("reconciles-failing", [
        {"series": f'floodgate_operator_reconcile_failures_total{{{NS},kind="Campaign",error="patch_scale"}}',
         "values": "0+2x30"},
        {"series": f'floodgate_operator_reconcile_failures_total{{{NS},kind="QueueConfig",error="unpublish"}}',
         "values": "0x30"},
    ], [alert("FloodgateOperatorReconcileErrors", "20m", {"namespace": NAMESPACE, "kind": "Campaign",
                                                           "error": "patch_scale", "severity": "warning"})]),
    ("target-contested", [
        {"series": f'floodgate_operator_conflict{{{NS},pod="op-a",campaign="shop/spring-drop"}}',
         "values": "0x3 1x20"},
        {"series": f'floodgate_operator_conflict{{{NS},pod="op-a",campaign="shop/other"}}', "values": "0x25"},
    ], [alert("FloodgateOperatorTargetContested", "6m"),
        alert("FloodgateOperatorTargetContested", "15m", {"namespace": NAMESPACE, "campaign": "shop/spring-drop",
                                                          "severity": "warning"})]),
    ("config-current", [
        {"series": f'floodgate_runtime_config_version{{{NS},pod="app-a"}}', "values": "3x20"},
        {"series": f'floodgate_runtime_config_version{{{NS},pod="app-b"}}', "values": "3x20"},
        {"series": f'floodgate_runtime_config_missing{{{NS},pod="app-a"}}', "values": "0x20"},
        {"series": f'floodgate_runtime_config_rejected_total{{{NS},pod="app-a"}}', "values": "1x20"},
    ], [alert("FloodgateRuntimeConfigStale", "15m")]),
    ("config-replica-behind", [
        {"series": f'floodgate_runtime_config_version{{{NS},pod="app-a"}}', "values": "3x20"},
        {"series": f'floodgate_runtime_config_version{{{NS},pod="app-b"}}', "values": "2x20"},
    ], [alert("FloodgateRuntimeConfigStale", "15m", {"namespace": NAMESPACE, "severity": "warning"})]),
    ("config-missing", [
        {"series": f'floodgate_runtime_config_missing{{{NS},pod="app-a"}}', "values": "0 0 1x20"},
    ], [alert("FloodgateRuntimeConfigStale", "15m", {"namespace": NAMESPACE, "severity": "warning"})]),
    ("config-rejected", [
        {"series": f'floodgate_runtime_config_rejected_total{{{NS},pod="app-a"}}', "values": "0x5 1 2 3 4 5 6 7 8"},
    ], [alert("FloodgateRuntimeConfigStale", "12m", {"namespace": NAMESPACE, "severity": "warning"})]),
]


@pytest.mark.parametrize("case, series, expected", CASES, ids=[c[0] for c in CASES])
def test_promtool_evaluates_the_operator_and_config_alerts(rendered, tmp_path, case, series, expected):
    # promtool compares annotations too; these tests are about the expressions
    groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in g["rules"]]}
              for g in rule_groups(rendered)]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": expected}]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    proc = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
