"""Helpers shared by the chart tests: object names, pod-spec accessors, validation of
rendered manifests (Kubernetes schemas, the chart's CRDs, prometheus-operator kinds)."""

from __future__ import annotations

import base64
import re

import jsonschema
import kubernetes_validate
import yaml

from conftest import CHART, NAMESPACE, RELEASE, REPO

# Newest Kubernetes minor kubernetes-validate ships schemas for (pinned in
# tests/chart/requirements.txt, so this moves only when the pin does).
K8S_VERSION = kubernetes_validate.latest_version()
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion; preStop `sleep` needs it).
K8S_MIN_VERSION = "1.30"

FULL = RELEASE  # release "floodgate" → objects "floodgate", "floodgate-app", ...
APP = f"{FULL}-app"
OPERATOR = f"{FULL}-operator"
CLUSTER_ROLE = f"{NAMESPACE}-{OPERATOR}"
RESOURCES_ROLE = f"{OPERATOR}-resources"

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


def secret_data(doc: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}


def app_routes() -> set[str]:
    src = "\n".join(p.read_text() for p in (REPO / "app" / "src").rglob("*.rs"))
    return set(re.findall(r'\.route\(\s*"(/[^"]*)"', src))


def operator_routes() -> set[str]:
    src = "\n".join(p.read_text() for p in (REPO / "operator" / "src").rglob("*.rs"))
    return set(re.findall(r'\.route\(\s*"(/[^"]*)"', src))


def crd_schemas() -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): openAPIV3Schema} from the chart's CRDs."""
    out = {}
    for path in sorted((CHART / "files" / "crds").glob("*.yaml")):
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
    assert key in schemas, f"no CRD in charts/floodgate/files/crds for {key}"
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
