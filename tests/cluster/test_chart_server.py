"""The whole chart, rendered with default values and with production-like values, validated
object by object by the real API server (`kubectl apply --dry-run=server`): schemas, defaulting,
admission (RBAC escalation checks included), with the chart's own CRDs and prometheus-operator's
monitoring CRDs installed as a cluster would have them."""

from __future__ import annotations

import pytest
import yaml

from conftest import CHART, REPO, render_chart

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
        "networkPolicy": {
            "prometheus": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}],
            "externalPostgresql": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "port": 5432},
            "externalRedis": {"to": [{"ipBlock": {"cidr": "10.30.0.10/32"}}], "port": 6380},
            "app": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
                    "extraEgress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]}]},
            "operator": {"apiServer": {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [6443]}},
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
    return [yaml.safe_load(p.read_text()) for p in sorted((CHART / "files" / "crds").glob("*.yaml"))]


@pytest.fixture(scope="module")
def chart_crds_installed(cp, monitoring_crds):
    # The chart's CRDs are templates (validated with the rest below, dry-run); the dry run of
    # the Campaigns and QueueConfigs a chart user applies needs them installed for real.
    cp.apply(chart_crds(), "--server-side", "--force-conflicts")
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
               "crd/campaigns.floodgate.dev", "crd/queueconfigs.floodgate.dev")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_chart_validates_on_the_api_server(cp, chart_crds_installed, namespace, scenario):
    docs = render_chart(SCENARIOS[scenario], namespace)
    assert len(docs) > 10, f"only {len(docs)} objects rendered"
    # Pods are admitted only when their ServiceAccount exists (Helm creates the `helm test`
    # account, weight -5, before its pod): create the accounts first, for real
    cp.apply([d for d in docs if d["kind"] == "ServiceAccount"], "-n", namespace)
    proc = cp.apply(docs, "--dry-run=server", "-n", namespace, check=False)
    assert proc.returncode == 0, f"the API server refused the {scenario} chart:\n{proc.stderr}"
    validated = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(validated) == len(docs), (
        f"{len(docs)} objects rendered, {len(validated)} validated:\n{proc.stdout}")


def test_chart_objects_apply_for_real(cp, chart_crds_installed, namespace):
    """Beyond dry-run: the default chart's objects are stored and a Deployment gets its
    ReplicaSet from the controller manager (no kubelet here, so Pods stay Pending)."""
    docs = render_chart({}, namespace)
    # cluster-wide objects stay out: the CRDs are the shared fixture's, and the aggregated
    # ClusterRoles would outlive this namespace (tests/cluster/test_chart_rbac.py applies them)
    cluster_wide = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    namespaced = [d for d in docs if d["kind"] not in cluster_wide]
    assert len(namespaced) < len(docs)
    cp.apply(namespaced, "-n", namespace)
    assert cp.get("networkpolicies", "-n", namespace)["items"], "no NetworkPolicy stored"
    app = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-app"))
    name = app["metadata"]["name"]
    cp.kubectl("-n", namespace, "wait", "--for=jsonpath={.status.observedGeneration}=1",
               f"deployment/{name}", "--timeout=60s")
    rs = cp.get("replicasets", "-n", namespace, "-l", "app.kubernetes.io/component=app")
    assert len(rs["items"]) == 1, rs["items"]


def test_notes_example_is_accepted_by_the_api_server(cp, chart_crds_installed, namespace):
    """The QueueConfig and Campaign NOTES.txt tells a chart user to apply, as printed."""
    import helm_python
    import re

    chart = helm_python.Chart.load(str(CHART))
    try:
        notes = chart.render({}, name="floodgate", namespace=namespace)["floodgate/templates/NOTES.txt"]
    finally:
        chart.close()
    (command, body) = re.findall(r"(kubectl -n \S+ apply -f -) <<'EOF'\n(.*?)\nEOF\n", notes, re.S)[0]
    assert command == f"kubectl -n {namespace} apply -f -"
    out = cp.kubectl("-n", namespace, "apply", "-f", "-", input=body).stdout
    assert out.count("created") == 2, out
