"""Delegation and isolation as rendered: the ClusterRoles aggregated into edit/admin/view, the
`helm test` hooks (the app's and the operator's readiness, the CRDs served) and the app's and
the operator's NetworkPolicies. tests/cluster checks the same objects on the real API server."""

from __future__ import annotations

import pytest

from conftest import NAMESPACE, RELEASE, SCENARIOS, find, one
from helpers import APP, OPERATOR, env_of, pod_spec

AGG = "rbac.authorization.k8s.io/aggregate-to-"
EDIT, VIEW = f"{NAMESPACE}-{RELEASE}-edit", f"{NAMESPACE}-{RELEASE}-view"


def test_roles_aggregate_into_edit_admin_and_view(rendered):
    manifests = rendered["default"]
    edit, view = one(manifests, "ClusterRole", EDIT), one(manifests, "ClusterRole", VIEW)
    assert {k for k, v in edit["metadata"]["labels"].items() if k.startswith(AGG) and v == "true"} == {
        f"{AGG}edit", f"{AGG}admin"}
    assert {k for k, v in view["metadata"]["labels"].items() if k.startswith(AGG) and v == "true"} == {
        f"{AGG}edit", f"{AGG}admin", f"{AGG}view"}
    (rule,) = edit["rules"]
    assert rule["apiGroups"] == ["floodgate.dev"] and sorted(rule["resources"]) == ["campaigns", "queueconfigs"]
    assert set(rule["verbs"]) == {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
    (rule,) = view["rules"]
    assert set(rule["verbs"]) == {"get", "list", "watch"}
    assert "campaigns/status" in rule["resources"] and "queueconfigs/status" in rule["resources"]
    # nobody but the operator writes status
    assert not [r for m in find(manifests, "ClusterRole") if m.name in (EDIT, VIEW)
                for r in m.doc["rules"] if any(x.endswith("/status") for x in r["resources"])
                and set(r["verbs"]) - {"get", "list", "watch"}]


def test_aggregation_can_be_turned_off(rendered):
    names = {m.name for m in find(rendered["crds-and-aggregation-off"], "ClusterRole")}
    assert not names & {EDIT, VIEW}


def hooks(manifests) -> dict[str, dict]:
    return {m.name: m.doc for m in manifests if m.doc["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_test_checks_app_operator_and_crds(rendered, scenario):
    tests = hooks(rendered[scenario])
    operator_on = (SCENARIOS[scenario].get("operator") or {}).get("enabled", True)
    pods = {n: d for n, d in tests.items() if d["kind"] == "Pod"}
    expected = {f"{RELEASE}-test-readyz", f"{RELEASE}-test-crds"} | ({f"{RELEASE}-test-operator"} if operator_on else set())
    assert set(pods) == expected
    readyz = env_of(pod_spec(pods[f"{RELEASE}-test-readyz"])["containers"][0])["URL"]["value"]
    assert readyz == f"http://{APP}.{NAMESPACE}.svc:8080/readyz"
    if operator_on:
        op = env_of(pod_spec(pods[f"{RELEASE}-test-operator"])["containers"][0])["URL"]["value"]
        assert op == f"http://{OPERATOR}.{NAMESPACE}.svc:9090/readyz"
    crds = pod_spec(pods[f"{RELEASE}-test-crds"])
    assert crds["serviceAccountName"] == f"{RELEASE}-test-crds" and crds["automountServiceAccountToken"] is True
    script = crds["containers"][0]["args"][0]
    assert "/apis/floodgate.dev/v1alpha1" in script and "campaigns queueconfigs" in script
    # its account may list the two kinds, nothing else; created before the pod
    roles = [d for m in rendered[scenario] for d in [m.doc] if d["kind"] == "Role" and m.name == f"{RELEASE}-test-crds"]
    (role,) = roles
    assert role["rules"] == [{"apiGroups": ["floodgate.dev"], "resources": ["campaigns", "queueconfigs"], "verbs": ["list"]}]
    for d in tests.values():
        weight = int(d["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
        assert weight == (0 if d["kind"] == "Pod" else -5), d["metadata"]["name"]
        assert "hook-succeeded" in d["metadata"]["annotations"]["helm.sh/hook-delete-policy"]


def policies(manifests) -> dict[str, dict]:
    return {m.name: m.doc["spec"] for m in find(manifests, "NetworkPolicy")}


def selects(peer: dict, component: str) -> bool:
    return peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == component \
        and "namespaceSelector" not in peer


def test_app_and_operator_policies_default(rendered):
    np = policies(rendered["default"])
    assert set(np) == {f"{RELEASE}-postgresql", f"{RELEASE}-redis", APP, OPERATOR}
    app, op = np[APP], np[OPERATOR]
    assert app["policyTypes"] == op["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = app["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = ingress["from"]
    for component in ("operator", "test"):
        assert any(selects(p, component) for p in peers), component
    assert any(p.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "ingress-nginx"} for p in peers)
    assert any(p.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"} for p in peers)
    # egress: DNS, the in-chart PostgreSQL and Redis, nothing else
    targets = {(tuple(sorted(str(p["port"]) for p in r["ports"])), bool(r.get("to"))) for r in app["egress"]}
    assert targets == {(("53", "53"), True), (("5432",), True), (("6379",), True)}
    assert any(selects(p, "postgresql") for r in app["egress"] for p in r.get("to", []))
    (ingress,) = op["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert any(selects(p, "test") for p in ingress["from"])
    ports = {str(p["port"]) for r in op["egress"] for p in r["ports"]}
    assert ports == {"443", "6443", "53", "6379", "8080", "9090"}
    assert any(selects(p, "app") for r in op["egress"] for p in r.get("to", []))
    assert any(selects(p, "redis") for r in op["egress"] for p in r.get("to", []))


def test_policies_follow_values(rendered):
    np = policies(rendered["network-policies-custom"])
    assert set(np) == {APP, OPERATOR}  # no in-chart databases
    app, op = np[APP], np[OPERATOR]
    peers = app["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}} in peers
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5432, "protocol": "TCP"}]} in app["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.30.0.10/32"}}], "ports": [{"port": 6380, "protocol": "TCP"}]} in app["egress"]
    assert {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]} in app["egress"]
    assert {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [{"port": 6443, "protocol": "TCP"}]} in op["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.30.0.10/32"}}], "ports": [{"port": 6380, "protocol": "TCP"}]} in op["egress"]
    assert not policies(rendered["network-policies-off"])
    assert set(policies(rendered["operator-off"])) == {f"{RELEASE}-postgresql", f"{RELEASE}-redis", APP}
