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
    "StatefulSet": ("apps", "statefulsets"),
    "Rollout": ("argoproj.io", "rollouts"),  # operator/src/cluster/rollout.rs
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "Lease": ("coordination.k8s.io", "leases"),
    "Pod": ("", "pods"),
    "Secret": ("", "secrets"),
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
    "entry": ("", ("get",)),  # commit() adds create/update, see scan()
    "get_status": ("/status", ("get",)),
    "patch_status": ("/status", ("patch",)),
    "replace_status": ("/status", ("update",)),
    "get_scale": ("/scale", ("get",)),
    "patch_scale": ("/scale", ("patch",)),
    "replace_scale": ("/scale", ("update",)),
}

RUST_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"

# Methods on an Api that make no API call.
IGNORED_METHODS = {"clone", "into", "as_ref", "resource_url", "namespace"}


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
    """The operator's production sources: every .rs file except modules declared under
    `#[cfg(test)]` (the mocked API server and its scenarios make calls the operator itself
    never makes)."""
    files = sorted(operator_src.rglob("*.rs"))
    test_modules: set[pathlib.Path] = set()  # paths without ".rs": a file module or a folder
    for path in files:
        src = _strip_comments(path.read_text(encoding="utf-8"))
        here = path.parent if path.name in {"mod.rs", "lib.rs", "main.rs"} else path.with_suffix("")
        for name in re.findall(rf"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+({RUST_IDENT})\s*;", src):
            test_modules.add(here / name)
    return [
        p for p in files
        if p.with_suffix("") not in test_modules and not any(m in p.parents for m in test_modules)
    ]


def _after_call(src: str, open_paren: int) -> int:
    """Index just past the parenthesis that closes the one at `open_paren`."""
    depth = 0
    for i in range(open_paren, len(src)):
        if src[i] == "(":
            depth += 1
        elif src[i] == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced parentheses")


def _bindings(src: str) -> list[tuple[int, str, str | None]]:
    """(position, name, Api type or None) for every `let`, parameter or field that binds a
    name, so a call resolves to the nearest binding before it (shadowing included)."""
    out: list[tuple[int, str, str | None]] = []
    for m in re.finditer(rf"\blet\s+(?:mut\s+)?({RUST_IDENT})\s*(:\s*[^=;]+)?=\s*", src):
        name, annotation = m.group(1), m.group(2) or ""
        ty = re.search(rf"Api<\s*({RUST_IDENT})\s*>", annotation)
        ctor = re.match(rf"(?:kube::)?Api::<\s*({RUST_IDENT})\s*>::", src[m.end():])
        out.append((m.start(), name, ty.group(1) if ty else ctor.group(1) if ctor else None))
    for m in re.finditer(rf"\b({RUST_IDENT})\s*:\s*&?\s*(?:kube::)?Api<\s*({RUST_IDENT})\s*>", src):
        out.append((m.start(), m.group(1), m.group(2)))
    return sorted(out)


def _resolve(bindings, name: str, pos: int) -> str | None:
    ty = None
    for bpos, bname, bty in bindings:
        if bpos >= pos:
            break
        if bname == name:
            ty = bty
    return ty


def scan(operator_src: pathlib.Path) -> dict[tuple[str, str], set[str]]:
    """{(group, resource or resource/subresource): verbs} the operator's code uses."""
    needs: dict[tuple[str, str], set[str]] = defaultdict(set)

    generic_params: set[str] = set()

    def need(ty: str, method: str, where: str) -> None:
        if ty in generic_params:
            return  # inside a generic helper: its callers' concrete types are scanned there
        if ty not in RESOURCES:
            raise ValueError(f"{where}: Api<{ty}> is not in operator_calls.RESOURCES; add it and its RBAC")
        if method not in METHODS:
            raise ValueError(f"{where}: .{method}() on Api<{ty}> is not in operator_calls.METHODS")
        group, resource = RESOURCES[ty]
        sub, verbs = METHODS[method]
        needs[(group, resource + sub)].update(verbs)

    for path in source_files(operator_src):
        src = _production_source(path)
        # A generic helper (`fn watched<K>(..) -> Api<K>`) makes no call by itself; its
        # callers bind concrete types (`let x: Api<Campaign> = watched(..)`).
        generics = set(re.findall(rf"\bfn\s+{RUST_IDENT}\s*<\s*({RUST_IDENT})\b", src))
        generic_params.clear()
        generic_params.update(generics)
        for ty in re.findall(rf"\bApi(?:::)?<\s*({RUST_IDENT})\s*>", src):
            if ty not in RESOURCES and ty not in generics:
                raise ValueError(f"{path}: Api<{ty}> is not in operator_calls.RESOURCES; add it and its RBAC")
        bindings = _bindings(src)
        # Calls on a bound Api: `api.get(..)`, `self.api.patch(..)`.
        for m in re.finditer(rf"\b({RUST_IDENT})\s*\.\s*({RUST_IDENT})\s*(?:::<[^>]*>)?\s*\(", src):
            name, method = m.groups()
            ty = _resolve(bindings, name, m.start())
            if ty is None or method in IGNORED_METHODS:
                continue
            need(ty, method, str(path))
        # Chained calls on a fresh Api: `Api::<T>::namespaced(c, ns).get_scale(..)`.
        for m in re.finditer(rf"(?:kube::)?Api::<\s*({RUST_IDENT})\s*>::\s*{RUST_IDENT}\s*\(", src):
            rest = src[_after_call(src, m.end() - 1):]
            chained = re.match(rf"\s*\.\s*({RUST_IDENT})\s*(?:::<[^>]*>)?\s*\(", rest)
            if chained and chained.group(1) not in IGNORED_METHODS:
                need(m.group(1), chained.group(1), str(path))
        # Watches (`watcher(api, ..)`, `Controller::new(api, ..)`, and cluster/controller.rs's
        # `controller(api)`, a Controller over a filtered watcher) list and watch.
        for m in re.finditer(rf"\b(?:watcher|metadata_watcher|Controller::new|controller|owns|watches)\s*\(\s*({RUST_IDENT})\b", src):
            ty = _resolve(bindings, m.group(1), m.start())
            if ty:
                need(ty, "list", str(path))
                need(ty, "watch", str(path))
        for ty in re.findall(rf"\b(?:watcher|metadata_watcher|Controller::new|owns|watches)\s*\(\s*(?:kube::)?Api::<\s*({RUST_IDENT})\s*>", src):
            need(ty, "list", str(path))
            need(ty, "watch", str(path))
        # kube's finalizer() adds and removes its finalizer with JSON patches.
        for m in re.finditer(rf"\bfinalizer\s*\(\s*&\s*({RUST_IDENT})\b", src):
            ty = _resolve(bindings, m.group(1), m.start())
            if ty:
                need(ty, "patch", str(path))
        # kube's Entry API: get_opt, then commit() creates a vacant entry and replaces an
        # occupied one.
        for m in re.finditer(rf"\b({RUST_IDENT})\s*\.\s*entry\s*\(", src):
            ty = _resolve(bindings, m.group(1), m.start())
            if ty and ".commit(" in src:
                if re.search(r"Entry::Vacant|\.or_insert", src):
                    need(ty, "create", str(path))
                if re.search(r"Entry::Occupied|\.and_modify", src):
                    need(ty, "replace", str(path))
        # kube's Recorder publishes events.k8s.io/v1 Events: create, and patch for a series.
        if re.search(r"\bRecorder::new\s*\(", src):
            needs[("events.k8s.io", "events")].update({"create", "patch"})
    return dict(needs)


def cluster_scoped_types(operator_src: pathlib.Path) -> set[str]:
    """Types the operator reads across all namespaces (`Api::<T>::all`)."""
    found: set[str] = set()
    for path in source_files(operator_src):
        src = _production_source(path)
        found.update(re.findall(rf"Api::<\s*({RUST_IDENT})\s*>::all\s*\(", src))
        for pos, name, ty in _bindings(src):
            if ty and re.search(rf"let\s+(?:mut\s+)?{re.escape(name)}\s*:\s*Api<\s*{ty}\s*>\s*=\s*Api::all\(", src):
                found.add(ty)
    return found


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
