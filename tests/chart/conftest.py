"""Shared fixtures for the offline chart tests: render the chart with helm-python-sdk (Helm's
Go library, no helm binary, no cluster) and hand the tests parsed manifests."""

from __future__ import annotations

import copy
import pathlib
from dataclasses import dataclass

import helm_python
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "floodgate"
RELEASE = "floodgate"
NAMESPACE = "shop"


def load_yaml(path: pathlib.Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


PRODUCTION = load_yaml(CHART / "values-production.yaml")

# Every values set the chart must render, lint and validate cleanly with.
SCENARIOS: dict[str, dict] = {
    "default": {},
    "production": PRODUCTION,
    "ingress": {
        "app": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "hosts": [{"host": "shop.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}],
            }
        }
    },
    "monitoring": {
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "podMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True},
            "grafanaDashboards": {"enabled": True},
        }
    },
    "external-databases": {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "secrets": {
            "databaseUrl": "postgres://floodgate:pw@pg.example.internal:5432/floodgate?sslmode=require",
            "redisUrl": "rediss://:pw@redis.example.internal:6379",
        },
    },
    "redis-cluster": {
        "redisMode": "cluster",
        "redis": {"enabled": False},
        "secrets": {
            "redisUrl": "redis://node-0.redis:6379,redis://node-1.redis:6379,redis://node-2.redis:6379",
        },
    },
    "persistence-and-noeviction": {
        "postgresql": {"persistence": {"enabled": True, "storageClass": "fast"}},
        "redis": {"persistence": {"enabled": True}, "maxmemoryPolicy": "noeviction"},
        "app": {"podDisruptionBudget": {"minAvailable": "50%"}},
    },
    "operator-off": {"operator": {"enabled": False}},
    "operator-other-namespace": {"operator": {"watchNamespace": "tenants"}},
    "operator-cluster-wide": {"operator": {"watchAllNamespaces": True}},
    # a second release in a cluster whose CRDs another release owns; own RBAC handed out
    "crds-and-aggregation-off": {"crds": {"install": False}, "rbac": {"aggregateToDefaultRoles": False}},
    "network-policies-custom": {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "secrets": {
            "databaseUrl": "postgres://floodgate:pw@pg.example.internal:5432/floodgate?sslmode=require",
            "redisUrl": "rediss://:pw@redis.example.internal:6380",
        },
        "networkPolicy": {
            "prometheus": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}],
            "externalPostgresql": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "port": 5432},
            "externalRedis": {"to": [{"ipBlock": {"cidr": "10.30.0.10/32"}}], "port": 6380},
            "app": {
                "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "traefik"}}}],
                "extraEgress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}],
            },
            "operator": {"apiServer": {"to": [{"ipBlock": {"cidr": "172.18.0.2/32"}}], "ports": [6443]}},
        },
    },
    "network-policies-off": {"networkPolicy": {"enabled": False}},
}


@dataclass
class Manifest:
    template: str
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]

    def __repr__(self) -> str:  # readable pytest ids and failure messages
        return f"{self.kind}/{self.name} ({self.template})"


@pytest.fixture(scope="session")
def chart():
    loaded = helm_python.Chart.load(str(CHART))
    yield loaded
    loaded.close()


def render(chart, values: dict, name: str = RELEASE) -> list[Manifest]:
    rendered = chart.render(values, name=name, namespace=NAMESPACE)
    out: list[Manifest] = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(Manifest(template, doc))
    return out


@pytest.fixture(scope="session")
def rendered(chart):
    """Manifests per scenario, rendered once per session."""
    return {name: render(chart, values) for name, values in SCENARIOS.items()}


def find(manifests: list[Manifest], kind: str, name_suffix: str = "") -> list[Manifest]:
    return [m for m in manifests if m.kind == kind and m.name.endswith(name_suffix)]


def one(manifests: list[Manifest], kind: str, name: str) -> dict:
    hits = [m for m in manifests if m.kind == kind and m.name == name]
    assert len(hits) == 1, f"expected exactly one {kind}/{name}, got {hits}"
    return hits[0].doc
