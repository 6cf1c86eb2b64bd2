"""What the operator asks of the Kubernetes API, read from its Rust source.

The chart's Role must grant exactly this: nothing the code does not call (least privilege) and
nothing less (or the operator fails at run time with 403). The scan is deliberately simple and
conservative, in the shape kube-rs code takes:

- `Api<T>` / `Api::<T>` mentions name the resource types the operator touches;
- calls on a binding of that type (`let x: Api<T>`, `x = Api::<T>::...`, parameters
  `x: &Api<T>`) give the verbs: get/get_opt → get, list → list, watch/watcher/Controller →
  list + watch, create → create, patch → patch, replace → update, delete → delete, and the
  `_status` / `_scale` variants the same verbs on the subresource;
- `finalizer(&api, ...)` patches the resource (adds and removes the finalizer);
- `Recorder` publishes Events (events.k8s.io, create + patch for series), and a core/v1 Event
  API is scanned like any other type.

Unknown types or verbs raise, so a new kind of call makes the test fail until the table below
and the Role are updated together.
"""

from __future__ import annotations

import pathlib
import re
from collections import defaultdict

# Rust type name → (API group, plural resource).
RESOURCES: dict[str, tuple[str, str]] = {
    "Campaign": ("floodgate.dev", "campaigns"),
    "QueueConfig": ("floodgate.dev", "queueconfigs"),
    "Deployment": ("apps", "deployments"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "Lease": ("coordination.k8s.io", "leases"),
    "Pod": ("", "pods"),
    "Event": ("", "events"),  # core/v1 Event; kube's Recorder uses events.k8s.io (below)
}

# Api method → (subresource suffix, verbs).
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "get": ("", ("get",)),
    "get_opt": ("", ("get",)),
    "get_metadata": ("", ("get",)),
    "get_metadata_opt": ("", ("get",)),
    "list": ("", ("list",)),
    "list_metadata": ("", ("list",)),
    "watch": ("", ("watch",)),
    "watch_metadata": ("", ("watch",)),
    "create": ("", ("create",)),
    "patch": ("", ("patch",)),
    "patch_metadata": ("", ("patch",)),
    "replace": ("", ("update",)),
    "delete": ("", ("delete",)),
    "delete_collection": ("", ("deletecollection",)),
    "entry": ("", ("get",)),  # entry().or_insert/commit also create/update, listed explicitly
    "get_status": ("/status", ("get",)),
    "patch_status": ("/status", ("patch",)),
    "replace_status": ("/status", ("update",)),
    "get_scale": ("/scale", ("get",)),
    "patch_scale": ("/scale", ("patch",)),
    "replace_scale": ("/scale", ("update",)),
}

RUST_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def _strip_comments(src: str) -> str:
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def _production_source(path: pathlib.Path) -> str:
    """The file without its `#[cfg(test)]` module: mocked API servers in tests make calls
    the operator itself never makes."""
    src = _strip_comments(path.read_text(encoding="utf-8"))
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+" + RUST_IDENT + r"\s*\{", src)
    return src[: cut.start()] if cut else src


def source_files(operator_src: pathlib.Path) -> list[pathlib.Path]:
    files = sorted(p for p in operator_src.rglob("*.rs"))
    # Test-only helpers (the mocked API server) are not the operator's calls.
    return [p for p in files if p.stem not in {"fixtures", "tests", "test_util", "testing"}]


def scan(operator_src: pathlib.Path) -> dict[tuple[str, str], set[str]]:
    """{(group, resource or resource/subresource): verbs} the operator's code uses."""
    needs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in source_files(operator_src):
        src = _production_source(path)
        bindings: dict[str, str] = {}
        # let x: Api<T> = ...   |   x: &Api<T> (parameters, fields)   |   let x = Api::<T>::...
        for name, ty in re.findall(rf"\b({RUST_IDENT})\s*:\s*&?\s*(?:kube::)?Api<\s*({RUST_IDENT})\s*>", src):
            bindings[name] = ty
        for name, ty in re.findall(rf"let\s+(?:mut\s+)?({RUST_IDENT})\s*=\s*(?:kube::)?Api::<\s*({RUST_IDENT})\s*>", src):
            bindings[name] = ty
        for ty in re.findall(rf"\bApi(?:::)?<\s*({RUST_IDENT})\s*>", src):
            if ty not in RESOURCES and ty not in {"K", "T", "R", "Self"}:
                raise ValueError(f"{path}: Api<{ty}> is not in operator_calls.RESOURCES; add it and its RBAC")
        for name, ty in bindings.items():
            if ty not in RESOURCES:
                continue
            group, resource = RESOURCES[ty]
            for method in re.findall(rf"\b{re.escape(name)}\s*\.\s*({RUST_IDENT})\s*(?:::<[^>]*>)?\s*\(", src):
                if method in {"clone", "into", "as_ref", "resource_url", "namespace"}:
                    continue
                if method not in METHODS:
                    raise ValueError(f"{path}: {name}.{method}() on Api<{ty}> is not in operator_calls.METHODS")
                sub, verbs = METHODS[method]
                needs[(group, resource + sub)].update(verbs)
            # watcher(api, ..) / Controller::new(api, ..) / .owns(api, ..) / .watches(api, ..)
            if re.search(rf"\b(?:watcher|metadata_watcher|Controller::new|owns|watches)\s*\(\s*{re.escape(name)}\b", src):
                needs[(group, resource)].update({"list", "watch"})
            if re.search(rf"\bfinalizer\s*\(\s*&\s*{re.escape(name)}\b", src):
                needs[(group, resource)].add("patch")
        # Controller::new(Api::<T>::..., ..) without a binding
        for ty in re.findall(rf"\b(?:watcher|metadata_watcher|Controller::new|owns|watches)\s*\(\s*(?:kube::)?Api::<\s*({RUST_IDENT})\s*>", src):
            needs[RESOURCES[ty]].update({"list", "watch"})
        if re.search(r"\bRecorder::new\s*\(", src):
            needs[("events.k8s.io", "events")].update({"create", "patch"})
    return dict(needs)


def role_grants(role: dict) -> dict[tuple[str, str], set[str]]:
    """{(group, resource): verbs} a rendered Role grants."""
    grants: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource) and "*" not in rule["verbs"], f"wildcard in {rule}"
                grants[(group, resource)].update(rule["verbs"])
    return dict(grants)
