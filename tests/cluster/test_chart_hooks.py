"""The chart's `helm test` checks, run as written against the real API server and a real
operator process (no kubelet here runs the Pods themselves): each hook Pod's shell check is
taken from the rendered chart and run with the environment a Pod would have, with the hook's
own ServiceAccount token. It passes when the CRDs are served and the operator leads, and
fails when they are not."""

from __future__ import annotations

import base64
import pathlib
import subprocess
import urllib.parse

import yaml

from conftest import ControlPlane, render_chart, wait_for

RELEASE = "floodgate"


def hook_pod(docs: list[dict], name: str) -> dict:
    (pod,) = [d for d in docs if d["kind"] == "Pod" and d["metadata"]["name"] == f"{RELEASE}-test-{name}"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    return pod


def run_check(pod: dict, env: dict, *, retries: bool = True) -> subprocess.CompletedProcess:
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["sh", "-ec"], container["command"]
    script = container["args"][0]
    if not retries:  # a failing check would otherwise retry for 30 s, as on a fresh install
        script = script.replace("--retry 10", "--retry 0")
    pod_env = {e["name"]: e["value"] for e in container.get("env", [])}
    return subprocess.run(["sh", "-ec", script], env={"PATH": "/usr/bin:/bin", **pod_env, **env},
                          capture_output=True, text=True, timeout=120)


def service_account_dir(cp: ControlPlane, namespace: str, account: str, folder: pathlib.Path) -> dict:
    """What the kubelet mounts and injects: the account's token and the cluster CA, and
    KUBERNETES_SERVICE_HOST/PORT (here the API server's address)."""
    kubeconfig = yaml.safe_load(cp.admin_kubeconfig.read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    token = cp.kubectl("-n", namespace, "create", "token", account, "--duration", "10m").stdout.strip()
    (folder / "token").write_text(token)
    server = urllib.parse.urlsplit(cluster["server"])
    return {"SA_DIR": str(folder), "KUBERNETES_SERVICE_HOST": server.hostname,
            "KUBERNETES_SERVICE_PORT": str(server.port)}


def test_crds_hook_passes_when_served_and_fails_without_its_rights(cp, crds, namespace, tmp_path):
    docs = render_chart({}, namespace)
    name = f"{RELEASE}-test-crds"
    hook_rbac = [d for d in docs if d["metadata"]["name"] == name and d["kind"] != "Pod"]
    assert sorted(d["kind"] for d in hook_rbac) == ["Role", "RoleBinding", "ServiceAccount"]
    cp.apply(hook_rbac, "-n", namespace)
    env = service_account_dir(cp, namespace, name, tmp_path / "sa")
    pod = hook_pod(docs, "crds")

    proc = run_check(pod, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for kind in ("campaigns", "queueconfigs"):
        assert f"floodgate.dev/v1alpha1 {kind}: served, listed in {namespace}" in proc.stdout, proc.stdout

    # without the hook's Role the list is refused, and the check says so
    cp.kubectl("-n", namespace, "delete", "rolebinding", name)
    proc = run_check(pod, env, retries=False)
    assert proc.returncode != 0 and "403" in proc.stderr, proc.stdout + proc.stderr


def test_operator_hook_passes_only_while_an_operator_leads(cp, operator_factory, namespace):
    docs = render_chart({}, namespace)
    pod = hook_pod(docs, "operator")
    leader = operator_factory(namespace)
    wait_for("the operator to lead", leader.ready, 60)
    proc = run_check(pod, {"URL": f"{leader.url}/readyz"})
    assert proc.returncode == 0, proc.stdout + proc.stderr

    follower = operator_factory(namespace)  # same Lease: up, but not leading
    wait_for("the follower to serve", lambda: _answers(f"{follower.url}/healthz"), 60)
    proc = run_check(pod, {"URL": f"{follower.url}/readyz"}, retries=False)
    assert proc.returncode != 0 and "503" in proc.stderr, proc.stdout + proc.stderr


def _answers(url: str) -> bool:
    import urllib.request
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except Exception:
        return False
