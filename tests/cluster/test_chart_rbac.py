"""Delegation: the chart's ClusterRoles aggregate into the built-in `edit`, `admin` and `view`
roles (the controller manager's clusterrole-aggregation controller folds them in), so a team
bound to `edit` in its namespace creates Campaigns and QueueConfigs and one bound to `view`
reads them, with no RBAC of the chart's own to hand out. Checked by impersonating such users
against the real API server."""

from __future__ import annotations

import pytest

from conftest import REPO, ControlPlane, render_chart, wait_for

EXAMPLES = REPO / "crds" / "examples"
RESOURCES = ("campaigns", "queueconfigs")


def aggregated_roles(namespace: str) -> list[dict]:
    docs = render_chart({}, namespace)
    return [d for d in docs if d["kind"] == "ClusterRole"
            and any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in d["metadata"].get("labels", {}))]


def grants_floodgate(cp: ControlPlane, role: str) -> bool:
    rules = cp.get(f"clusterrole/{role}").get("rules") or []
    return all(any("floodgate.dev" in r.get("apiGroups", []) and res in r.get("resources", []) for r in rules)
               for res in RESOURCES)


def can(cp: ControlPlane, user: str, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    sub = ["--subresource", subresource] if subresource else []
    proc = cp.kubectl("auth", "can-i", verb, f"{resource}.floodgate.dev", *sub, "-n", namespace, "--as", user,
                      check=False)
    return proc.stdout.strip() == "yes"


@pytest.fixture
def chart_roles(cp: ControlPlane, crds, namespace):
    roles = aggregated_roles(namespace)
    assert roles, "the chart renders no ClusterRole aggregated to edit/view"
    cp.apply(roles)
    yield roles
    cp.kubectl("delete", "clusterrole", *[r["metadata"]["name"] for r in roles], "--ignore-not-found")


def test_edit_and_view_users_get_campaigns_and_queueconfigs(cp, crds, chart_roles, namespace):
    # the clusterrole-aggregation controller runs in the controller manager
    for role in ("edit", "view", "admin"):
        wait_for(f"clusterrole/{role} to aggregate floodgate.dev", lambda: grants_floodgate(cp, role), 30)
    cp.kubectl("-n", namespace, "create", "rolebinding", "team-edit", "--clusterrole=edit", "--user=alice")
    cp.kubectl("-n", namespace, "create", "rolebinding", "team-view", "--clusterrole=view", "--user=bob")

    # alice (edit) creates both kinds, as a user would with kubectl
    for example in ("queueconfig.yaml", "campaign.yaml"):
        out = cp.kubectl("-n", namespace, "--as", "alice", "apply", "-f", str(EXAMPLES / example)).stdout
        assert "created" in out, out
    for resource in RESOURCES:
        for verb in ("create", "update", "patch", "delete", "get", "list", "watch"):
            assert can(cp, "alice", verb, resource, namespace), f"edit cannot {verb} {resource}"
        # the status is the operator's to write; editors read it
        assert not can(cp, "alice", "patch", resource, namespace, "status")
        assert can(cp, "alice", "get", resource, namespace, "status")

    # bob (view) reads them, and nothing more
    listed = cp.kubectl("-n", namespace, "--as", "bob", "get", "campaigns,queueconfigs", "-o", "name").stdout.split()
    assert sorted(listed) == ["campaign.floodgate.dev/xmas-tickets", "queueconfig.floodgate.dev/concert-42"], listed
    refused = cp.kubectl("-n", namespace, "--as", "bob", "delete", "campaign", "xmas-tickets", check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr
    for resource in RESOURCES:
        for verb in ("get", "list", "watch"):
            assert can(cp, "bob", verb, resource, namespace), f"view cannot {verb} {resource}"
        for verb in ("create", "update", "patch", "delete"):
            assert not can(cp, "bob", verb, resource, namespace), f"view can {verb} {resource}"
    # the bindings are namespaced: nothing elsewhere
    assert not can(cp, "alice", "create", "campaigns", "default")
    assert not can(cp, "bob", "list", "campaigns", "default")
