"""Offline tests of charts/floodgate: render, lint and validate without a cluster or a helm
binary, and check the rendered objects against what the app and the operator really do."""

from __future__ import annotations

import base64
import json
import pathlib
import re

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

import operator_calls
from conftest import (
    CHART,
    NAMESPACE,
    PRODUCTION,
    RELEASE,
    REPO,
    SCENARIOS,
    deep_merge,
    find,
    one,
    render,
)

# Newest Kubernetes minor kubernetes-validate ships schemas for (pinned in
# scripts/chart-tests.sh, so this moves only when the pin does).
K8S_VERSION = kubernetes_validate.latest_version()
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion; preStop `sleep` needs it).
K8S_MIN_VERSION = "1.30"
FULL = RELEASE  # release "floodgate" → objects "floodgate", "floodgate-app", ...
APP = f"{FULL}-app"
OPERATOR = f"{FULL}-operator"

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}


def pod_spec(doc: dict) -> dict:
    return doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]


def containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def container(doc: dict, name: str) -> dict:
    (hit,) = [c for c in containers(doc) if c["name"] == name]
    return hit


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def crd_schemas() -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): openAPIV3Schema} from the chart's CRDs."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            out[key] = version["schema"]["openAPIV3Schema"]
    return out


def openapi_to_jsonschema(schema):
    """OpenAPI v3 structural schema → JSON Schema: `nullable: true` allows null; the
    x-kubernetes-* extensions carry no validation jsonschema understands (CEL rules are the
    API server's job) and are dropped; int-or-string accepts both."""
    if isinstance(schema, list):
        return [openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        out[key] = openapi_to_jsonschema(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else out["type"] + ["null"]
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    return out


def validate_custom(doc: dict) -> None:
    schemas = crd_schemas()
    key = (doc["apiVersion"], doc["kind"])
    assert key in schemas, f"no CRD in charts/floodgate/crds for {key}"
    jsonschema.Draft7Validator(openapi_to_jsonschema(schemas[key])).validate(doc)


# prometheus-operator's CRDs are not installed here; these schemas hold the fields the chart
# uses, as monitoring.coreos.com/v1 defines them, and refuse anything else.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1}},
    "required": ["matchLabels"],
    "additionalProperties": False,
}
_NS_SELECTOR = {"type": "object", "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}, "additionalProperties": False}
_ENDPOINT = {
    "type": "object",
    "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"}, "interval": _DURATION, "scrapeTimeout": _DURATION},
    "required": ["port"],
    "additionalProperties": False,
}
_META = {"type": "object", "required": ["name", "namespace", "labels"]}
MONITORING_SCHEMAS = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {"selector": _LABEL_SELECTOR, "namespaceSelector": _NS_SELECTOR, "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}},
            },
        },
    },
    "PodMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "podMetricsEndpoints"],
                "additionalProperties": False,
                "properties": {"selector": _LABEL_SELECTOR, "namespaceSelector": _NS_SELECTOR, "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}},
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "rules": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {
                                        "type": "object",
                                        "required": ["alert", "expr", "labels", "annotations"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "labels": {"type": "object", "required": ["severity"], "additionalProperties": {"type": "string"}},
                                            "annotations": {
                                                "type": "object",
                                                "required": ["summary", "description", "runbook_url"],
                                                "additionalProperties": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
}


def validate_manifest(doc: dict, version: str = K8S_VERSION) -> None:
    group = doc["apiVersion"].split("/")[0] if "/" in doc["apiVersion"] else ""
    if group == "floodgate.dev":
        validate_custom(doc)
    elif group == "monitoring.coreos.com":
        assert doc["kind"] in MONITORING_SCHEMAS, doc["kind"]
        jsonschema.Draft7Validator(MONITORING_SCHEMAS[doc["kind"]]).validate(doc)
    else:
        # strict: unknown fields are errors. A kind without a schema raises
        # SchemaNotFoundError, which fails the test (nothing is skipped).
        kubernetes_validate.validate(doc, version, strict=True)


# ---------------------------------------------------------------------------------------
# Render, lint, validate
# ---------------------------------------------------------------------------------------


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
    for m in manifests:
        assert m.doc["metadata"].get("namespace", NAMESPACE) in (NAMESPACE,), m
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


@pytest.mark.parametrize("version", [K8S_MIN_VERSION, K8S_VERSION])
def test_crd_manifests_validate(version):
    crds = sorted((CHART / "crds").glob("*.yaml"))
    assert crds, "charts/floodgate/crds/ holds no CRD"
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
    assert campaign["spec"]["redis"]["maxmemoryPolicy"] in {"volatile-lru", "noeviction"}


def render_app_port() -> int:
    return yaml.safe_load((CHART / "values.yaml").read_text())["app"]["port"]


def test_schema_catches_a_bad_example_field():
    """The CRD validation above is real: a misspelt or out-of-range field is refused."""
    queue = yaml.safe_load((CHART / "examples" / "queueconfig.yaml").read_text())
    bad = deep_merge(queue, {"spec": {"queueing": "lifo"}})
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(bad)


def test_kubernetes_validate_is_strict(rendered):
    """A typo in a rendered object would be caught."""
    deploy = one(rendered["default"], "Deployment", APP)
    broken = json.loads(json.dumps(deploy))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


# ---------------------------------------------------------------------------------------
# values.schema.json and render-time guards
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"redis": {"maxmemoryPolicy": "allkeys-lru"}},
        {"redis": {"maxmemoryPolicy": "allkeys-lfu"}},
        {"app": {"environment": "staging"}},
        {"app": {"podSecurityContext": {"runAsNonRoot": False}}},
        {"app": {"securityContext": {"readOnlyRootFilesystem": False}}},
        {"secrets": {"jwtSecret": "too-short"}},
        {"redisPrefix": "fg {x}:"},
        {"app": {"replicaCount": 0}},
        {"app": {"unknownKey": 1}},
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
    ],
)
def test_render_refuses_unsafe_combinations(chart, bad, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)


# ---------------------------------------------------------------------------------------
# App Deployment: probes, draining, spread, resources
# ---------------------------------------------------------------------------------------


def app_routes() -> set[str]:
    src = "\n".join(p.read_text() for p in (REPO / "app" / "src").rglob("*.rs"))
    return set(re.findall(r'\.route\(\s*"(/[^"]*)"', src))


def operator_routes() -> set[str]:
    src = "\n".join(p.read_text() for p in (REPO / "operator" / "src").rglob("*.rs"))
    return set(re.findall(r'\.route\(\s*"(/[^"]*)"', src))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_app_probes_hit_real_routes(rendered, scenario):
    routes = app_routes()
    assert {"/livez", "/readyz"} <= routes, f"app routes found: {sorted(routes)}"
    app = container(one(rendered[scenario], "Deployment", APP), "app")
    assert app["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert app["startupProbe"]["httpGet"]["path"] in routes
    port_names = {p["name"] for p in app["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert app[probe]["httpGet"]["port"] in port_names


def test_operator_probes_and_metrics_port(rendered):
    routes = operator_routes()
    assert {"/healthz", "/readyz", "/metrics"} <= routes, f"operator routes found: {sorted(routes)}"
    doc = one(rendered["default"], "Deployment", OPERATOR)
    op = container(doc, "operator")
    (port,) = op["ports"]
    assert port["name"] == "metrics"
    assert op["args"] == ["controller", "--listen", f"0.0.0.0:{port['containerPort']}", "--lease-name", OPERATOR]
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert op["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    svc = one(rendered["default"], "Service", OPERATOR)
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"


def test_helm_test_hook_calls_readyz(rendered):
    (pod,) = find(rendered["default"], "Pod")
    assert pod.doc["metadata"]["annotations"]["helm.sh/hook"] == "test"
    svc = one(rendered["default"], "Service", APP)
    url = pod.doc["spec"]["containers"][0]["args"][-1]
    assert url == f"http://{APP}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}/readyz"
    assert "/readyz" in app_routes()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_app_drains_before_it_is_killed(rendered, scenario):
    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), SCENARIOS[scenario])
    doc = one(rendered[scenario], "Deployment", APP)
    spec = pod_spec(doc)
    app = container(doc, "app")
    env = env_of(app)
    sleep = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    delay = int(env["FLOODGATE_SHUTDOWN_DELAY_SECS"]["value"])
    timeout = int(env["FLOODGATE_REQUEST_TIMEOUT_MS"]["value"]) // 1000
    assert sleep == values["app"]["preStopSleepSeconds"] and sleep > 0
    assert spec["terminationGracePeriodSeconds"] > sleep + delay + timeout
    assert doc["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_app_resources_spread_and_migrations(rendered):
    doc = one(rendered["default"], "Deployment", APP)
    spec = pod_spec(doc)
    for c in containers(doc):
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
    keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for t in spec["topologySpreadConstraints"]:
        assert t["labelSelector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    (init,) = spec["initContainers"]
    assert init["args"] == ["migrate"] and init["image"] == container(doc, "app")["image"]
    assert container(doc, "app")["args"] == ["serve"]
    assert spec["automountServiceAccountToken"] is False


def test_app_environment(rendered):
    app = container(one(rendered["default"], "Deployment", APP), "app")
    env = env_of(app)
    assert env["FLOODGATE_LISTEN_ADDR"]["value"] == "0.0.0.0:8080"
    assert app["ports"][0]["containerPort"] == 8080
    assert env["FLOODGATE_ENV"]["value"] == "production"
    assert env["FLOODGATE_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for name in ("DATABASE_URL", "FLOODGATE_JWT_SECRET", "REDIS_URL"):
        assert "value" not in env[name], f"{name} must come from a Secret"
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == FULL
    for name in ("FLOODGATE_DB_POOL_SIZE", "RUST_LOG", "FLOODGATE_REDIS_PREFIX"):
        assert env[name]["value"]
    # Every variable the chart sets is one the app reads.
    config = (REPO / "app" / "src" / "config.rs").read_text()
    for name in env:
        assert f'env = "{name}"' in config or name == "RUST_LOG", f"app does not read {name}"


# ---------------------------------------------------------------------------------------
# Security: non-root everywhere
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_non_root_everywhere(rendered, scenario):
    workloads = [m for m in rendered[scenario] if m.kind in WORKLOAD_KINDS]
    assert workloads
    for m in workloads:
        spec = pod_spec(m.doc)
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, f"{m}: pod runAsNonRoot"
        assert psc.get("runAsUser", 1) != 0 and psc.get("runAsGroup", 1) != 0, m
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", m
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), m
        for c in containers(m.doc):
            sc = c.get("securityContext", {})
            where = f"{m} container {c['name']}"
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, where
            assert sc.get("runAsNonRoot", True) is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert not sc.get("privileged"), where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where


# ---------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------


def secret_data(doc: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}


def test_generated_secret_wires_in_chart_databases(rendered):
    data = secret_data(one(rendered["default"], "Secret", FULL))
    assert len(data["jwt-secret"]) >= 32
    pw = data["postgres-password"]
    assert len(pw) >= 24
    assert data["database-url"] == f"postgres://floodgate:{pw}@{FULL}-postgresql:5432/floodgate"
    assert data["redis-url"] == f"redis://{FULL}-redis:6379"
    one(rendered["default"], "Service", f"{FULL}-postgresql")
    one(rendered["default"], "Service", f"{FULL}-redis")
    pg = container(one(rendered["default"], "StatefulSet", f"{FULL}-postgresql"), "postgresql")
    assert env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "postgres-password"}


def test_external_databases_use_given_urls_and_no_statefulsets(rendered):
    manifests = rendered["external-databases"]
    assert not find(manifests, "StatefulSet")
    data = secret_data(one(manifests, "Secret", FULL))
    assert data["database-url"] == SCENARIOS["external-databases"]["secrets"]["databaseUrl"]
    assert data["redis-url"] == SCENARIOS["external-databases"]["secrets"]["redisUrl"]
    assert "postgres-password" not in data


def test_existing_secret_is_referenced_not_created(rendered):
    manifests = rendered["production"]
    assert not find(manifests, "Secret")
    assert not find(manifests, "StatefulSet")
    name = PRODUCTION["secrets"]["existingSecret"]
    for deploy in (APP, OPERATOR):
        for c in containers(one(manifests, "Deployment", deploy)):
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
            assert refs == {name}, (deploy, c["name"], refs)


# ---------------------------------------------------------------------------------------
# Operator: same Redis as the app, leader election, RBAC equal to its calls
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "operator-off"])
def test_operator_uses_the_apps_redis(rendered, scenario):
    manifests = rendered[scenario]
    app_env = env_of(container(one(manifests, "Deployment", APP), "app"))
    op_env = env_of(container(one(manifests, "Deployment", OPERATOR), "operator"))
    for name in ("REDIS_URL", "FLOODGATE_REDIS_PREFIX"):
        assert op_env[name] == app_env[name], name


def test_operator_off_renders_no_operator_objects(rendered):
    manifests = rendered["operator-off"]
    assert not [m for m in manifests if m.doc["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]


CLUSTER_ROLE = f"{NAMESPACE}-{OPERATOR}"


def test_operator_service_account_is_bound(rendered):
    manifests = rendered["default"]
    doc = one(manifests, "Deployment", OPERATOR)
    sa = pod_spec(doc)["serviceAccountName"]
    one(manifests, "ServiceAccount", sa)
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    binding = one(manifests, "RoleBinding", OPERATOR)
    assert binding["subjects"] == subject
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
    cluster_binding = one(manifests, "ClusterRoleBinding", CLUSTER_ROLE)
    assert cluster_binding["subjects"] == subject
    assert cluster_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE}
    # The app gets no Kubernetes API access at all.
    app_sa = pod_spec(one(manifests, "Deployment", APP))["serviceAccountName"]
    bound = {s["name"] for m in manifests if m.kind.endswith("Binding") for s in m.doc["subjects"]}
    assert app_sa not in bound


def test_rbac_grants_exactly_what_the_operator_calls(rendered):
    manifests = rendered["default"]
    cluster = operator_calls.role_grants(one(manifests, "ClusterRole", CLUSTER_ROLE))
    namespaced = operator_calls.role_grants(one(manifests, "Role", OPERATOR))
    needed = operator_calls.scan(REPO / "operator" / "src")
    assert needed, "found no Kubernetes API call in operator/src"
    granted = {k: cluster.get(k, set()) | namespaced.get(k, set()) for k in cluster.keys() | namespaced.keys()}
    assert granted == needed, (
        "RBAC and operator code disagree:\n"
        f"  granted but unused: { {k: sorted(v - needed.get(k, set())) for k, v in granted.items() if v - needed.get(k, set())} }\n"
        f"  used but not granted: { {k: sorted(v - granted.get(k, set())) for k, v in needed.items() if v - granted.get(k, set())} }"
    )
    # Only the Lease is confined to the release namespace; the rest is cluster-wide because
    # the controllers watch every namespace (Api::all) and act where each Campaign lives.
    assert set(namespaced) == {("coordination.k8s.io", "leases")}
    assert ("coordination.k8s.io", "leases") not in cluster
    assert {"Campaign", "QueueConfig"} <= operator_calls.cluster_scoped_types(REPO / "operator" / "src")


def test_rbac_scanner_sees_calls(tmp_path):
    """The scanner is not vacuous: it finds the verbs of a small kube-rs snippet, with
    shadowed bindings, chained calls, the Entry API and test code left out."""
    (tmp_path / "a.rs").write_text(
        """
        async fn act(client: Client, ns: &str) {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            let d = deployments.get("floodgate-app").await?;
            Api::<Deployment>::namespaced(client.clone(), ns).patch_scale("floodgate-app", &pp, &patch).await?;
            let api = Api::<Campaign>::all(client.clone());
            Controller::new(api, Config::default());
            finalizer(&api, "floodgate.dev/cleanup", obj, |e| async {}).await;
            let api = Api::<QueueConfig>::namespaced(client.clone(), ns);
            api.patch_status("x", &pp, &status).await?;
            let recorder = Recorder::new(client, reporter);
        }
        async fn lead(leases: &Api<Lease>) {
            match leases.entry("x").await? {
                Entry::Vacant(v) => v.insert(lease).commit(&pp).await,
                Entry::Occupied(mut o) => o.commit(&pp).await,
            };
        }
        #[cfg(test)]
        mod tests { fn t(pods: Api<Pod>) { pods.delete("x"); } }
        """
    )
    assert operator_calls.scan(tmp_path) == {
        ("apps", "deployments"): {"get"},
        ("apps", "deployments/scale"): {"patch"},
        ("floodgate.dev", "campaigns"): {"list", "watch", "patch"},
        ("floodgate.dev", "queueconfigs/status"): {"patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
        ("coordination.k8s.io", "leases"): {"get", "create", "update"},
    }
    assert operator_calls.cluster_scoped_types(tmp_path) == {"Campaign"}


def test_leader_election_lease_is_granted(rendered):
    doc = one(rendered["default"], "Deployment", OPERATOR)
    op = container(doc, "operator")
    assert env_of(op)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env_of(op)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # A new pod cannot become ready (leading) while the old one holds the Lease.
    assert doc["spec"]["strategy"] == {"type": "Recreate"}
    assert doc["spec"]["replicas"] <= 1
    grants = operator_calls.role_grants(one(rendered["default"], "Role", OPERATOR))
    assert {"get", "create", "update"} <= grants[("coordination.k8s.io", "leases")]


# ---------------------------------------------------------------------------------------
# CRDs, Redis, monitoring
# ---------------------------------------------------------------------------------------


def test_chart_crds_equal_repo_crds():
    repo = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert repo, "crds/*.yaml does not exist yet: the operator has not generated its CRDs"
    assert chart.keys() == repo.keys(), f"chart has {sorted(chart)}, repo has {sorted(repo)}"
    stale = [name for name in repo if chart[name] != repo[name]]
    assert not stale, f"charts/floodgate/crds differs from crds/ for {stale}: cp crds/*.yaml charts/floodgate/crds/"


def test_chart_loads_its_crds(chart):
    kinds = {yaml.safe_load(c["data"])["spec"]["names"]["kind"] for c in chart.crds}
    assert kinds == {"Campaign", "QueueConfig"}


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if SCENARIOS[s].get("redis", {}).get("enabled", True)])
def test_redis_cannot_evict_queue_keys(rendered, scenario):
    cm = one(rendered[scenario], "ConfigMap", f"{FULL}-redis")
    conf = dict(line.split(None, 1) for line in cm["data"]["redis.conf"].splitlines() if line and not line.startswith("#"))
    assert conf["maxmemory-policy"] in {"volatile-lru", "noeviction"}
    assert conf["maxmemory"]
    sts = one(rendered[scenario], "StatefulSet", f"{FULL}-redis")
    assert container(sts, "redis")["command"] == ["redis-server", "/etc/redis/redis.conf"]


def test_render_refuses_allkeys_even_without_schema(tmp_path):
    """The template guard holds on its own, for installs that skip schema validation."""
    import shutil

    copy = tmp_path / "floodgate"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    with helm_python.Chart.load(str(copy)) as unchecked:
        with pytest.raises(helm_python.HelmRenderError, match="allkeys-lru"):
            unchecked.render({"redis": {"maxmemoryPolicy": "allkeys-lru"}}, name=RELEASE, namespace=NAMESPACE)
        unchecked.render({"redis": {"maxmemoryPolicy": "noeviction"}}, name=RELEASE, namespace=NAMESPACE)


EXPECTED_ALERTS = {
    "FloodgateCircuitBreakerOpen": "floodgate_circuit_state",
    "FloodgateStreamLag": "floodgate_stream_lag",
    "FloodgateQueueAdmissionStalled": "floodgate_queue_admitted_total",
    "FloodgateP95OverTarget": "floodgate_http_request_duration_seconds_bucket",
    "FloodgateOperatorFallbackActive": "floodgate_operator_fallback",
}


def test_prometheus_rule_alerts_and_runbooks(rendered):
    (rule,) = find(rendered["monitoring"], "PrometheusRule")
    alerts = {r["alert"]: r for g in rule.doc["spec"]["groups"] for r in g["rules"]}
    assert alerts.keys() == EXPECTED_ALERTS.keys()
    for name, metric in EXPECTED_ALERTS.items():
        assert metric in alerts[name]["expr"], name
        assert f'namespace="{NAMESPACE}"' in alerts[name]["expr"]
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


def test_ingress(rendered):
    (ing,) = find(rendered["ingress"], "Ingress")
    spec = ing.doc["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}]
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": APP, "port": {"name": "http"}}
    assert not find(rendered["default"], "Ingress")


def test_pdb_modes(rendered):
    assert one(rendered["default"], "PodDisruptionBudget", APP)["spec"]["maxUnavailable"] == 1
    pdb = one(rendered["persistence-and-noeviction"], "PodDisruptionBudget", APP)["spec"]
    assert pdb["minAvailable"] == "50%" and "maxUnavailable" not in pdb


def test_persistence_uses_claims(rendered):
    for name in (f"{FULL}-postgresql", f"{FULL}-redis"):
        sts = one(rendered["persistence-and-noeviction"], "StatefulSet", name)
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        assert "data" not in {v["name"] for v in pod_spec(sts)["volumes"]}
        default = one(rendered["default"], "StatefulSet", name)
        assert "volumeClaimTemplates" not in default["spec"] or name.endswith("postgresql")


def test_notes_render(chart):
    notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["floodgate/templates/NOTES.txt"]
    assert "helm test floodgate" in notes and APP in notes and "kubectl" in notes


def test_names_follow_the_release(chart):
    manifests = render(chart, {}, name="shop-a")
    names = {(m.kind, m.name) for m in manifests}
    assert ("Deployment", "shop-a-floodgate-app") in names
    assert ("Deployment", "shop-a-floodgate-operator") in names
    assert all(m.doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "shop-a" for m in manifests)


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


def test_operator_command_line_is_one_the_binary_accepts(rendered):
    """The subcommand and every flag the chart passes exist in operator/src/main.rs (clap
    derive: variant `Controller` → `controller`, field `lease_name` → `--lease-name`)."""
    op = container(one(rendered["default"], "Deployment", OPERATOR), "operator")
    main = (REPO / "operator" / "src" / "main.rs").read_text()
    subcommand, *rest = op["args"]
    variant = "".join(w.capitalize() for w in subcommand.split("-"))
    assert re.search(rf"^\s*{variant}\s*\{{", main, re.M), f"no subcommand {subcommand}"
    for flag in [a for a in rest if a.startswith("--")]:
        field = flag[2:].replace("-", "_")
        assert re.search(rf"\b{field}\s*:", main), f"operator has no flag {flag}"


def test_operator_environment_is_read_by_the_operator(rendered):
    """Every variable the chart sets on the operator is one its code reads (a typo or a
    renamed flag would otherwise be silently ignored)."""
    op = container(one(rendered["default"], "Deployment", OPERATOR), "operator")
    src = "\n".join(p.read_text() for p in (REPO / "operator" / "src").rglob("*.rs"))
    for name in env_of(op):
        if name == "RUST_LOG":  # read by tracing-subscriber's EnvFilter
            continue
        assert f'"{name}"' in src, f"operator/src never reads {name}"


def test_chart_kube_version_floor_matches_the_tests():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["kubeVersion"] == f">={K8S_MIN_VERSION}.0-0"


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


def test_network_policies_admit_only_the_clients(rendered):
    manifests = rendered["default"]
    pods = {m.name: m.doc["spec"]["template"]["metadata"]["labels"] for m in manifests if m.kind in {"Deployment", "StatefulSet"}}

    def admitted(policy: dict) -> set[str]:
        peers = [p["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"] for p in rule["from"]]
        return {name for name, labels in pods.items() if any(peer.items() <= labels.items() for peer in peers)}

    pg = one(manifests, "NetworkPolicy", f"{FULL}-postgresql")
    assert pg["spec"]["podSelector"]["matchLabels"].items() <= pods[f"{FULL}-postgresql"].items()
    assert admitted(pg) == {APP}
    redis = one(manifests, "NetworkPolicy", f"{FULL}-redis")
    assert redis["spec"]["podSelector"]["matchLabels"].items() <= pods[f"{FULL}-redis"].items()
    assert admitted(redis) == {APP, OPERATOR}
    # Named ports exist on the selected containers.
    assert pg["spec"]["ingress"][0]["ports"] == [{"port": "postgresql", "protocol": "TCP"}]
    assert container(one(manifests, "StatefulSet", f"{FULL}-redis"), "redis")["ports"][0]["name"] == "redis"
    assert not find(rendered["external-databases"], "NetworkPolicy")
