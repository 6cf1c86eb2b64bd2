"""The whole chart, rendered with default values and with production-like values, validated
object by object by the real API server (`kubectl apply --dry-run=server`): schemas, defaulting,
admission (RBAC escalation checks included), with the chart's own CRDs and prometheus-operator's
monitoring CRDs installed as a cluster would have them."""

from __future__ import annotations

import pytest
import yaml

from conftest import CHART, render_chart

PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())
SCENARIOS = {
    "default": {},
    "production": PRODUCTION,
    "production-everything-on": {
        **PRODUCTION,
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboards": {"enabled": True},
        },
        "app": {
            **PRODUCTION.get("app", {}),
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": [{"host": "shop.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}],
            },
        },
    },
}


def chart_crds() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((CHART / "crds").glob("*.yaml"))]


@pytest.fixture(scope="module")
def chart_crds_installed(cp, monitoring_crds):
    # Helm installs crds/ before the templates; do the same (server-side, as upgrades would).
    cp.apply(chart_crds(), "--server-side", "--force-conflicts")
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
               "crd/campaigns.floodgate.dev", "crd/queueconfigs.floodgate.dev")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_chart_validates_on_the_api_server(cp, chart_crds_installed, namespace, scenario):
    docs = render_chart(SCENARIOS[scenario], namespace)
    assert len(docs) > 10, f"only {len(docs)} objects rendered"
    proc = cp.apply(docs, "--dry-run=server", "-n", namespace, check=False)
    assert proc.returncode == 0, f"the API server refused the {scenario} chart:\n{proc.stderr}"
    validated = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(validated) == len(docs), (
        f"{len(docs)} objects rendered, {len(validated)} validated:\n{proc.stdout}")


def test_chart_objects_apply_for_real(cp, chart_crds_installed, namespace):
    """Beyond dry-run: the default chart's objects are stored and a Deployment gets its
    ReplicaSet from the controller manager (no kubelet here, so Pods stay Pending)."""
    docs = render_chart({}, namespace)
    cp.apply(docs, "-n", namespace)
    app = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-app"))
    name = app["metadata"]["name"]
    cp.kubectl("-n", namespace, "wait", "--for=jsonpath={.status.observedGeneration}=1",
               f"deployment/{name}", "--timeout=60s")
    rs = cp.get("replicasets", "-n", namespace, "-l", "app.kubernetes.io/component=app")
    assert len(rs["items"]) == 1, rs["items"]
