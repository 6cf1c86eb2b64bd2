"""Render, lint and validate charts/floodgate offline (no cluster, no helm binary): every
values example, the schema, the CRDs and the examples, names and labels."""

from __future__ import annotations

import json
import re

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, REPO, SCENARIOS, deep_merge, one, render
from helpers import APP, K8S_MIN_VERSION, K8S_VERSION, validate_custom, validate_manifest


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_reports_nothing(scenario):
    report = helm_python.lint(str(CHART), SCENARIOS[scenario], strict=True, namespace=NAMESPACE, kube_version=f"v{K8S_MIN_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]


@pytest.mark.parametrize("version", [K8S_MIN_VERSION, K8S_VERSION])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_validates(rendered, scenario, version):
    manifests = rendered[scenario]
    assert len(manifests) >= 8
    # Everything lives in the release namespace, but for the operator's Role and RoleBinding
    # (and `helm test`'s list-only ones) in the namespace it watches (operator.watchNamespace).
    watched = (SCENARIOS[scenario].get("operator") or {}).get("watchNamespace") or NAMESPACE
    for m in manifests:
        allowed = {NAMESPACE, watched} if m.name.endswith(("-resources", "-test-crds")) else {NAMESPACE}
        assert m.doc["metadata"].get("namespace", NAMESPACE) in allowed, m
        try:
            validate_manifest(m.doc, version)
        except Exception as e:  # name the object in the failure
            raise AssertionError(f"{m}: {getattr(e, 'message', e)}") from e


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_labels_are_conventional(rendered, scenario):
    for m in rendered[scenario]:
        labels = m.doc["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, f"{m} lacks label {key}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_match_their_pods(rendered, scenario):
    manifests = rendered[scenario]
    pods = {m.name: m.doc["spec"]["template"]["metadata"]["labels"] for m in manifests if m.kind in {"Deployment", "StatefulSet"}}
    for m in manifests:
        if m.kind in {"Deployment", "StatefulSet"}:
            sel = m.doc["spec"]["selector"]["matchLabels"]
            assert sel.items() <= pods[m.name].items(), m
        if m.kind == "Service":
            sel = m.doc["spec"]["selector"]
            assert any(sel.items() <= labels.items() for labels in pods.values()), f"{m} selects no pod"
        if m.kind == "PodDisruptionBudget":
            assert m.doc["spec"]["selector"]["matchLabels"].items() <= pods[APP].items()


def test_names_follow_the_release(chart):
    manifests = render(chart, {}, name="shop-a")
    names = {(m.kind, m.name) for m in manifests}
    assert ("Deployment", "shop-a-floodgate-app") in names
    assert ("Deployment", "shop-a-floodgate-operator") in names
    assert all(m.doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "shop-a" for m in manifests)


def notes(chart, values: dict) -> str:
    return chart.render(values, name=RELEASE, namespace=NAMESPACE)["floodgate/templates/NOTES.txt"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_work_from_a_chart_repository(chart, scenario):
    """NOTES name the release's objects and give commands only; nothing a chart pulled from a
    repository lacks (repository paths such as charts/, docs/, examples/ or a .yaml file)."""
    text = notes(chart, SCENARIOS[scenario])
    assert f"helm test {RELEASE} -n {NAMESPACE}" in text and APP in text and "kubectl" in text
    assert not re.search(r"(charts|docs|examples|crds)/|\.ya?ml\b|\.md\b", text), text


def notes_manifests(text: str) -> list[dict]:
    """The manifests of the NOTES' `kubectl apply -f - <<'EOF'` heredoc."""
    (body,) = re.findall(r"<<'EOF'\n(.*?)\nEOF\n", text, re.S)
    return [d for d in yaml.safe_load_all(body) if d]


@pytest.mark.parametrize("scenario", ["default", "operator-other-namespace"])
def test_notes_example_is_a_valid_sales_event(chart, scenario):
    text = notes(chart, SCENARIOS[scenario])
    docs = notes_manifests(text)
    assert [d["kind"] for d in docs] == ["QueueConfig", "Campaign"]
    for doc in docs:
        validate_custom(doc)
    queue, campaign = docs
    assert campaign["spec"]["target"]["deployment"] == APP
    assert campaign["spec"]["queues"] == [queue["metadata"]["name"]]
    assert campaign["spec"]["schedule"]["endsAt"] > campaign["spec"]["schedule"]["startsAt"]
    watched = (SCENARIOS[scenario].get("operator") or {}).get("watchNamespace") or NAMESPACE
    assert f"kubectl -n {watched} apply -f - <<'EOF'" in text


def test_chart_kube_version_floor_matches_the_tests():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["kubeVersion"] == f">={K8S_MIN_VERSION}.0-0"


@pytest.mark.parametrize(
    "bad",
    [
        {"redis": {"maxmemoryPolicy": "allkeys-lru"}},
        {"redis": {"maxmemoryPolicy": "allkeys-lfu"}},
        {"redis": {"maxmemoryPolicy": "volatile-lru"}},
        {"app": {"environment": "staging"}},
        {"app": {"podSecurityContext": {"runAsNonRoot": False}}},
        {"app": {"securityContext": {"readOnlyRootFilesystem": False}}},
        {"secrets": {"jwtSecret": "too-short"}},
        {"redisPrefix": "fg {x}:"},
        {"redisMode": "sentinel"},
        # a Redis Cluster is external: the in-chart Redis is one node
        {"redisMode": "cluster"},
        {"app": {"replicaCount": 0}},
        {"app": {"unknownKey": 1}},
        {"app": {"trustedProxies": ["everyone"]}},
        {"app": {"passwordHashConcurrency": 0}},
    ],
    ids=lambda v: json.dumps(v, sort_keys=True),
)
def test_schema_refuses(chart, bad):
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(bad)
    with pytest.raises(helm_python.HelmError):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_schema_accepts_scenarios(chart, scenario):
    chart.validate_schema(SCENARIOS[scenario])


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"app": {"terminationGracePeriodSeconds": 15}}, "terminationGracePeriodSeconds"),
        ({"postgresql": {"enabled": False}}, "secrets.databaseUrl"),
        ({"redis": {"enabled": False}}, "secrets.redisUrl"),
        ({"app": {"clientIpHeader": "x-real-ip"}}, "app.trustedProxies"),
    ],
)
def test_render_refuses_unsafe_combinations(chart, bad, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)


def test_kubernetes_validate_is_strict(rendered):
    """A typo in a rendered object would be caught."""
    deploy = one(rendered["default"], "Deployment", APP)
    broken = json.loads(json.dumps(deploy))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


CHART_CRDS = CHART / "files" / "crds"


def test_chart_crds_equal_repo_crds():
    """One source: crds/*.yaml (generated from the Rust types); the chart carries byte copies
    that `make crds` (scripts/crds.sh) writes."""
    repo = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    assert repo, "crds/*.yaml does not exist yet: the operator has not generated its CRDs"
    assert chart.keys() == repo.keys(), f"chart has {sorted(chart)}, repo has {sorted(repo)}"
    stale = [name for name in repo if chart[name] != repo[name]]
    assert not stale, f"charts/floodgate/files/crds differs from crds/ for {stale}: run `make crds`"


def test_crds_are_templates_that_helm_upgrades(chart, rendered):
    """Not in crds/ (Helm installs that folder once and never upgrades it): templates, whose
    spec is exactly the generated CRD's, kept on uninstall."""
    assert chart.crds == [], "a crds/ folder would be installed once and never upgraded"
    assert not (CHART / "crds").exists()
    crds = [m for m in rendered["default"] if m.kind == "CustomResourceDefinition"]
    assert sorted(m.name for m in crds) == ["campaigns.floodgate.dev", "queueconfigs.floodgate.dev"]
    for m in crds:
        generated = yaml.safe_load((CHART_CRDS / f"{m.doc['spec']['names']['singular']}.yaml").read_text())
        assert {k: v for k, v in m.doc.items() if k != "metadata"} == {k: v for k, v in generated.items() if k != "metadata"}
        assert m.doc["metadata"]["name"] == generated["metadata"]["name"]
        assert m.doc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert "namespace" not in m.doc["metadata"]


def test_crds_install_false_renders_no_crd(chart):
    manifests = render(chart, {"crds": {"install": False}})
    assert not [m for m in manifests if m.kind == "CustomResourceDefinition"]


@pytest.mark.parametrize("version", [K8S_MIN_VERSION, K8S_VERSION])
def test_crd_manifests_validate(version):
    crds = sorted(CHART_CRDS.glob("*.yaml"))
    assert crds, "charts/floodgate/files/crds/ holds no CRD"
    for path in crds:
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)


@pytest.mark.parametrize("example", sorted((CHART / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_chart_examples_validate_against_crds(example):
    docs = [d for d in yaml.safe_load_all(example.read_text()) if d]
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == "floodgate.dev/v1alpha1"
        validate_custom(doc)


def test_examples_cover_campaign_and_queueconfig_and_agree():
    docs = [d for p in sorted((CHART / "examples").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert {"Campaign", "QueueConfig"} <= by_kind.keys()
    campaign, queue = by_kind["Campaign"], by_kind["QueueConfig"]
    # The Campaign drives the example QueueConfig and targets the chart's app Deployment.
    assert queue["metadata"]["name"] in campaign["spec"]["queues"]
    assert campaign["spec"]["target"]["deployment"] == APP
    assert campaign["spec"]["scaling"]["metrics"]["scrape"]["port"] == render_app_port()
    assert campaign["spec"]["redis"]["maxmemoryPolicy"] == "noeviction"


def render_app_port() -> int:
    return yaml.safe_load((CHART / "values.yaml").read_text())["app"]["port"]


def test_schema_catches_a_bad_example_field():
    """The CRD validation above is real: a misspelt or out-of-range field is refused."""
    queue = yaml.safe_load((CHART / "examples" / "queueconfig.yaml").read_text())
    bad = deep_merge(queue, {"spec": {"queueing": "lifo"}})
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(bad)
